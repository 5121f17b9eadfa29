private import Synchronization

/// One way to send requests to one remote peer: an outbound stream (a `sendStatus` request
/// stream this peer opened, or a `getTask` response stream a dialer opened) and the requests
/// waiting for their replies.
///
/// The stream's owner — the dialer's session or the `getTask` handler — drains ``outgoing``
/// into the RPC writer and feeds replies to ``pending``. When the stream ends, it calls
/// ``close(with:)``: waiting callers fail with a clear error, nothing hangs.
final class OutboundRoute: Sendable {
  struct Outgoing: Sendable {
    var id: String
    var text: String
  }

  let identity: PeerIdentity
  let kind: LinkKind
  let pending = PendingRequests()
  let outgoing: AsyncStream<Outgoing>
  private let continuation: AsyncStream<Outgoing>.Continuation

  init(identity: PeerIdentity, kind: LinkKind) {
    self.identity = identity
    self.kind = kind
    (self.outgoing, self.continuation) = AsyncStream.makeStream()
  }

  /// Sends one request and waits for its reply, until `deadline`.
  func send(id: String, text: String, deadline: ContinuousClock.Instant) async throws -> ReplyBody {
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        guard self.pending.register(id: id, deadline: deadline, continuation: continuation) else {
          return
        }
        if case .terminated = self.continuation.yield(Outgoing(id: id, text: text)) {
          self.pending.fail(id: id, with: self.disconnectedError)
        }
      }
    } onCancel: {
      self.pending.fail(id: id, with: CancellationError())
    }
  }

  /// Ends the outbound stream and fails every request still waiting.
  func close(with error: any Error) {
    self.continuation.finish()
    self.pending.close(with: error)
  }

  /// Ends the outbound stream only: requests already sent may still be answered.
  func finishOutgoing() {
    self.continuation.finish()
  }

  var disconnectedError: PeerAgentError {
    PeerAgentError(
      code: .disconnected,
      message: "the link to '\(self.identity)' went down before the reply arrived"
    )
  }
}
