internal import ContactProto
internal import GRPCCore
internal import Logging

/// The listener's side of the `Contact` service, for single-channel dialers and dual-channel
/// peers alike.
///
/// - `sendStatus`: each request goes to the handler (exactly once per id); each reply goes back
///   on the same stream with the request's id. Heartbeats are answered here.
/// - `getTask`: the dialer's stream becomes this peer's link to it: requests sent to the
///   dialer are pushed down it, with heartbeats when the dialer announced them.
/// - `tellResult`: replies to those pushed requests, matched by id (or in order, without one).
struct ContactService: Contact_Contact.StreamingServiceProtocol {
  let context: LinkContext

  func sendStatus(
    request: StreamingServerRequest<Contact_ClientMsg>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<Contact_Result> {
    let remote = try await self.context.authenticate(context)
    let identity = remote.identity
    let peer = self.context
    peer.checkMode(of: identity, announced: Announcement(request.metadata))
    let started = ContinuousClock.now
    return StreamingServerResponse(metadata: peer.announcement) { writer in
      try await RPCLifetime.run(context, metadata: request.metadata, started: started) {
      try await peer.serving(remote) {
        try await withTaskExecutorPreference(peer.executor(for: context)) {
          let replies = WriteQueue<Contact_Result>()
          let budget = ReplyBudget(peer.config.limits)
          let inbound = InboundRequests(context: peer, identity: identity, link: .sendStatus, budget: budget) { reply in
            replies.enqueue(reply)
          }
          try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
              while let batch = await replies.next() {
                try await writer.write(contentsOf: batch)
                budget.written(batch)
              }
            }
            defer { replies.finish() }
            // Read until the remote half-closes, or this peer closes its links (shutdown,
            // after the grace period): the replies queued are written, then the stream ends
            // with the goodbye.
            try await peer.closing.unlessSet {
              try await withThrowingDiscardingTaskGroup { handlers in
                for try await message in request.messages {
                  try await inbound.receive(message.inbound, in: &handlers)
                }
              }
            }
          }
        }
      }
      return peer.closing.isSet ? LinkEnding.Goodbye.metadata : [:]
      }
    }
  }

  func getTask(
    request: StreamingServerRequest<Contact_Empty>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<Contact_ServerMsg> {
    let remote = try await self.context.authenticate(context)
    let identity = remote.identity
    let peer = self.context
    let announcement = Announcement(request.metadata)
    peer.checkMode(of: identity, announced: announcement)
    return StreamingServerResponse { writer in
      try await peer.serving(remote) {
        let link = Link(identity: identity, kind: .getTask, window: peer.outbox.window, executor: peer.executor(for: context))
        link.remoteMaximumMessageBytes = announcement.maximumMessageBytes
        peer.table.attach(link)
        var reason = "the dialer closed getTask"
        do {
          try await withTaskExecutorPreference(peer.executor(for: context)) {
            try await withRPCCancellationHandler {
              try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                  try await link.drain(into: peer.outbox) { batch in
                    try await writer.write(contentsOf: batch.map(Contact_ServerMsg.init))
                  }
                }
                if announcement.heartbeats, let heartbeat = peer.heartbeat {
                  // The dialer answers each heartbeat on tellResult, which marks the link heard.
                  link.watchHeartbeats()
                  group.addTask { try await heartbeat.run(on: link, reportingTo: peer.table) }
                }
                try await group.next()
                group.cancelAll()
              }
            } onCancelRPC: {
              link.finishOutgoing()
            }
          }
        } catch {
          reason = "getTask failed: \(ErrorChain.rootCause(error))"
          peer.table.detach(link, reason: reason)
          throw error
        }
        peer.table.detach(link, reason: reason)
      }
      return peer.closing.isSet ? LinkEnding.Goodbye.metadata : [:]
    }
  }

  func tellResult(
    request: StreamingServerRequest<Contact_Result>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<Contact_Empty> {
    let remote = try await self.context.authenticate(context)
    let identity = remote.identity
    let peer = self.context
    let started = ContinuousClock.now
    return StreamingServerResponse { writer in
      try await RPCLifetime.run(context, metadata: request.metadata, started: started) {
        try await peer.serving(remote) {
          try await withTaskExecutorPreference(peer.executor(for: context)) {
            for try await result in request.messages {
              peer.table.receivedOnTellResult(result.reply, from: identity)
            }
            try await writer.write(Contact_Empty())
          }
        }
        return [:]
      }
    }
  }
}
