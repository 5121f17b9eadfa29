internal import ContactProto
internal import GRPCCore
internal import Logging

/// The metadata key by which PeerAgent peers announce that they send and answer heartbeats
/// (value: the sender's heartbeat interval in milliseconds). Older peers never send it, and
/// never get a heartbeat.
let heartbeatMetadataKey = "peer-agent-heartbeat"

/// The metadata key by which PeerAgent peers announce the largest message they accept (value:
/// bytes), so that a sender fails a request above it instead of writing it (the remote would
/// reset the whole stream).
let maximumMessageBytesMetadataKey = "peer-agent-max-message-bytes"

extension Metadata {
  /// Whether the other side announced that it sends and answers heartbeats.
  var announcesHeartbeats: Bool {
    self[stringValues: heartbeatMetadataKey].contains { _ in true }
  }

  /// The largest message the other side announced it accepts, if it did.
  var announcedMaximumMessageBytes: Int? {
    self[stringValues: maximumMessageBytesMetadataKey].first(where: { _ in true }).flatMap { Int($0) }
  }
}

/// Encoded sizes of the `Contact` messages, without encoding them.
enum WireSize {
  /// A request (`ClientMsg` or `ServerMsg`: the text in field 1, the id in field 2).
  static func request(id: String, text: String) -> Int {
    self.stringField(text.utf8.count) + self.stringField(id.utf8.count)
  }

  /// A string field of `length` bytes: absent when empty (proto3), else tag, length, bytes.
  private static func stringField(_ length: Int) -> Int {
    guard length > 0 else { return 0 }
    var value = UInt64(length)
    var varint = 1
    while value >= 0x80 {
      value >>= 7
      varint += 1
    }
    return 1 + varint + length
  }
}

/// The listener's side of the `Contact` service, for single-channel dialers and dual-channel
/// peers alike.
///
/// - `sendStatus`: each request goes to the handler (exactly once per id); each reply goes back
///   on the same stream with the request's id. Heartbeats are answered here.
/// - `getTask`: the dialer's stream becomes this peer's route to it: requests sent to the
///   dialer are pushed down it, with heartbeats when the dialer announced them.
/// - `tellResult`: replies to those pushed requests, matched by id (or in order, without one).
struct ContactService: Contact_Contact.StreamingServiceProtocol {
  let peer: Peer

  func sendStatus(
    request: StreamingServerRequest<Contact_ClientMsg>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<Contact_Result> {
    let identity = try self.peer.identity(of: context)
    let peer = self.peer
    return StreamingServerResponse(metadata: peer.announcement) { writer in
      try await withTaskExecutorPreference(peer.streamExecutor) {
        let replies = WriteQueue<Contact_Result>()
        let inbound = InboundRequests(peer: peer, identity: identity, link: .sendStatus) { reply in
          replies.enqueue(reply)
        }
        try await withThrowingDiscardingTaskGroup { group in
          group.addTask {
            while let batch = await replies.next() {
              try await writer.write(contentsOf: batch)
            }
          }
          defer { replies.finish() }
          try await withThrowingDiscardingTaskGroup { handlers in
            for try await message in request.messages {
              await inbound.receive(id: message.id, text: message.msg, isHeartbeat: message.heartbeat, in: &handlers)
            }
          }
        }
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
    let announced = request.metadata.announcesHeartbeats
    return StreamingServerResponse { writer in
      let route = OutboundRoute(identity: identity, kind: .getTask, window: peer.outbox.window)
      route.remoteMaximumMessageBytes = request.metadata.announcedMaximumMessageBytes
      peer.attach(route)
      var reason = "the dialer closed getTask"
      do {
        try await withTaskExecutorPreference(peer.streamExecutor) {
          try await withRPCCancellationHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
              group.addTask {
                try await route.drain(into: peer.outbox) { batch in
                  try await writer.write(contentsOf: batch.map(Contact_ServerMsg.init))
                }
              }
              if announced, let heartbeat = peer.heartbeat {
                // The dialer answers each heartbeat on tellResult, which marks the route heard.
                route.health.arm()
                group.addTask {
                  try await heartbeat.run(
                    send: { route.enqueue(.heartbeat) },
                    watched: [route.health],
                    report: { peer.setLinkState($0, of: identity.name, reason: "heartbeats are late") }
                  )
                }
              }
              try await group.next()
              group.cancelAll()
            }
          } onCancelRPC: {
            route.finishOutgoing()
          }
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
      try await withTaskExecutorPreference(peer.streamExecutor) {
        for try await result in request.messages {
          let route = peer.registry.latestRoute(to: identity.name)
          route?.health.heard()
          if result.heartbeat { continue }
          peer.deliver(ReplyBody(result), from: identity, on: route)
        }
        try await writer.write(Contact_Empty())
      }
      return [:]
    }
  }
}

extension Contact_ClientMsg {
  /// A request (or heartbeat) on `sendStatus`.
  init(_ outgoing: OutboundRoute.Outgoing) {
    self.init()
    self.msg = outgoing.text
    self.id = outgoing.id
    self.heartbeat = outgoing.isHeartbeat
  }
}

extension Contact_ServerMsg {
  /// A request (or heartbeat) pushed down `getTask`.
  init(_ outgoing: OutboundRoute.Outgoing) {
    self.init()
    self.task = outgoing.text
    self.id = outgoing.id
    self.heartbeat = outgoing.isHeartbeat
  }
}

extension Contact_Result {
  init(_ reply: ReplyBody) {
    self.init()
    self.id = reply.id
    self.ret = reply.text
    if let error = reply.error { self.error = error }
    if let code = reply.code { self.code = code }
  }
}

extension ReplyBody {
  init(_ result: Contact_Result) {
    self.init(
      id: result.id,
      text: result.ret,
      error: result.error.isEmpty ? nil : result.error,
      code: result.code.isEmpty ? nil : result.code
    )
  }
}

extension Duration {
  var milliseconds: Int64 {
    self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000
  }
}
