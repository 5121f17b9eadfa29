internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2

/// A dialer's `sendStatus` stream, in either mode: this peer's requests to the remote, written
/// on the stream's ``Link``, and their replies, matched on it.
struct SendStatusStream: Sendable {
  let setup: SessionSetup

  /// Runs the stream; throws when it ends.
  func run() async throws {
    let setup = self.setup
    let (links, linkContinuation) = AsyncStream<Link>.makeStream()
    // The response side detaches the link, with the reason the response gives (the remote's
    // goodbye in its trailers), which the request side, cancelled as the response ends, cannot
    // know. Once the call is over the link is detached in any case (a response that never
    // started has no handler to do it); a detach of a link already detached is ignored.
    let attached = LockedBox<Link?>(nil)
    let writeFailure = LockedBox<String?>(nil)
    let responseEnded = Signal()
    defer {
      if let link = attached.current {
        setup.context.table.detach(link, reason: setup.ending.current ?? writeFailure.current ?? "the session ended")
      }
    }
    try await setup.contact.sendStatus(
      metadata: setup.context.announcement,
      options: setup.options,
      requestProducer: { writer in
        defer { linkContinuation.finish() }
        // The stream is open, so the TLS handshake is done and the listener's identity known.
        // Attach now, not when response headers arrive: a server may send those only with its
        // first reply (grpcio's generator handlers do).
        try await setup.holdingKey {
          let link = Link(
            identity: setup.identity(), kind: .sendStatus, window: setup.context.outbox.window, executor: setup.executor
          )
          // Watched from the start when the remote heartbeated before: a stream on which
          // nothing ever arrives is stalled too.
          if setup.remote.isKnownToHeartbeat { link.watchHeartbeats() }
          linkContinuation.yield(link)
          linkContinuation.finish()
          setup.connected.set()
          setup.context.table.attach(link, queuedAs: setup.placeholder)
          attached.withLock { $0 = link }
          setup.remote.name = link.identity.name
          do {
            try await self.write(on: link, to: writer)
          } catch is CancellationError {
            throw CancellationError()
          } catch {
            let reason = error is Heartbeat.Stalled ? "\(error)" : ErrorChain.rootCause(error)
            writeFailure.withLock { $0 = reason }
            if !(error is Heartbeat.Stalled) {
              // A write fails once the remote has ended the call; its replies and its goodbye
              // may still be in the response: throwing now would cancel their reading. Give the
              // response side a moment to finish first.
              await Signal.sleep(for: .seconds(1), unlessAnyOf: [responseEnded])
            }
            setup.ends(because: reason)
            throw error
          }
        }
      }
    ) { response in
      defer { responseEnded.set() }
      if case .failure(let error) = response.accepted {
        setup.noteRefusal(error)
        linkContinuation.finish()
        throw error
      }
      guard let link = await links.first(where: { _ in true }) else { return }
      let reason = await self.readReplies(from: response, on: link)
      setup.context.table.detach(link, reason: setup.ending.current ?? reason)
    }
    throw Dialer.SessionEnded(reason: "sendStatus ended")
  }

  /// Hands every reply on the stream to its request; returns why the stream ended.
  private func readReplies(from response: StreamingClientResponse<Contact_Result>, on link: Link) async -> String {
    let announcement = Announcement(response.metadata)
    if announcement.heartbeats { self.setup.remote.isKnownToHeartbeat = true }
    link.learn(from: announcement)
    self.setup.context.checkMode(of: link.identity, announced: announcement)
    do {
      let goodbye = try await self.setup.read(response) { result in
        link.health.heard()
        guard let answer = result.reply else { return }  // a heartbeat's answer
        self.setup.context.table.deliver(answer, on: link)
      }
      return goodbye ? "\(link.identity.name) shut down" : "the remote closed sendStatus"
    } catch is CancellationError {
      return "the session ended"
    } catch {
      self.setup.noteRefusal(error)
      return ErrorChain.rootCause(error)
    }
  }

  /// Writes what the link is given (the outbox's requests, heartbeats) until the link ends or
  /// the heartbeat finds the remote silent.
  private func write(on link: Link, to writer: RPCWriter<Contact_ClientMsg>) async throws {
    let context = self.setup.context
    let getTaskHealth = self.setup.getTaskHealth
    try await withThrowingTaskGroup(of: Void.self) { streams in
      streams.addTask {
        try await link.drain(into: context.outbox) { batch in
          try await writer.write(contentsOf: batch.map(Contact_ClientMsg.init))
        }
      }
      if let heartbeat = context.heartbeat {
        streams.addTask {
          try await heartbeat.run(on: link, alsoWatching: [getTaskHealth], reportingTo: context.table)
        }
      }
      defer { streams.cancelAll() }
      try await streams.next()
    }
  }
}
