internal import ContactProto
internal import GRPCCore
internal import Logging

/// The listener's side of the `Contact` service, for single-channel dialers and dual-channel
/// peers alike.
///
/// - `sendStatus`: each request goes to the handler, in order; each reply goes back on the same
///   stream with the request's id.
/// - `getTask`: the dialer's stream becomes this peer's route to it: requests sent to the
///   dialer are pushed down it.
/// - `tellResult`: replies to those pushed requests, matched by id (or in order, without one)
///   to the dialer's route, found by the dialer's identity.
struct ContactService: Contact_Contact.StreamingServiceProtocol {
  let peer: Peer

  func sendStatus(
    request: StreamingServerRequest<Contact_ClientMsg>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<Contact_Result> {
    let identity = try self.peer.identity(of: context)
    let peer = self.peer
    return StreamingServerResponse { writer in
      for try await message in request.messages {
        let reply = await peer.handle(
          IncomingRequest(id: message.id, text: message.msg, from: identity, link: .sendStatus)
        )
        try await writer.write(Contact_Result(reply))
      }
      return [:]
    }
  }

  func getTask(
    request: StreamingServerRequest<Contact_Empty>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<Contact_ServerMsg> {
    let identity = try self.peer.identity(of: context)
    let peer = self.peer
    return StreamingServerResponse { writer in
      let route = OutboundRoute(identity: identity, kind: .getTask)
      peer.attach(route)
      var reason = "the dialer closed getTask"
      do {
        try await withRPCCancellationHandler {
          for await outgoing in route.outgoing {
            route.pending.markWritten(id: outgoing.id)
            var message = Contact_ServerMsg()
            message.task = outgoing.text
            message.id = outgoing.id
            try await writer.write(message)
          }
        } onCancelRPC: {
          route.finishOutgoing()
        }
      } catch {
        reason = "getTask failed: \(Peer.rootCause(error))"
        peer.detach(route, reason: reason)
        throw error
      }
      peer.detach(route, reason: reason)
      return [:]
    }
  }

  func tellResult(
    request: StreamingServerRequest<Contact_Result>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<Contact_Empty> {
    let identity = try self.peer.identity(of: context)
    let peer = self.peer
    return StreamingServerResponse { writer in
      peer.registry.openReplyStream(from: identity.name)
      defer {
        for ended in peer.registry.closeReplyStream(from: identity.name) {
          ended.close(with: ended.disconnectedError)
        }
      }
      for try await result in request.messages {
        let reply = ReplyBody(result)
        guard let route = peer.registry.replyRoute(from: identity.name), route.pending.resolve(reply)
        else {
          peer.logger(for: identity).notice(
            "a reply on tellResult matched no waiting request",
            metadata: ["id": "\(result.id)"]
          )
          continue
        }
      }
      try await writer.write(Contact_Empty())
      return [:]
    }
  }
}

extension Contact_Result {
  init(_ reply: ReplyBody) {
    self.init()
    self.id = reply.id
    self.ret = reply.text
    if let error = reply.error { self.error = error }
  }
}

extension ReplyBody {
  init(_ result: Contact_Result) {
    self.init(id: result.id, text: result.ret, error: result.error.isEmpty ? nil : result.error)
  }
}
