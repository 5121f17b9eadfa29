/// One request this peer sent, accepted into its outbox: kept until its reply arrives or its
/// time to live ends, and sent again after every reconnect — and, with a durable store, after a
/// restart (see ``Peer/recoveredDeliveries``).
public struct Delivery: Sendable {
  /// The request id, unique to this request; the receiver de-duplicates by it.
  public let id: String
  /// The request text.
  public let text: String
  /// The remote peer it is addressed to.
  public let peer: String

  let promise: DeliveryPromise
  let started: ContinuousClock.Instant
  let outbox: Outbox

  /// Waits for the reply, then lets the peer forget the request.
  ///
  /// Cancelling the waiting task ends the wait, not the request: it stays in the outbox.
  ///
  /// - Returns: The reply, who sent it, and the time since the request was accepted.
  /// - Throws: ``PeerAgentError``: `timedOut`, `unknownPeer`, `remoteHandlerFailed`,
  ///   `shuttingDown`; or `CancellationError`.
  public func reply() async throws -> Reply {
    defer { self.settle() }
    return try await self.waitForReply()
  }

  /// Waits for the reply, and keeps it in the store until ``settle()``: a caller that must not
  /// lose a reply to a crash (it reports it, say) settles only once the reply is safe. After a
  /// restart, a reply that arrived but was not settled is handed over again, through
  /// ``Peer/recoveredDeliveries``.
  ///
  /// - Throws: As ``reply()``.
  public func waitForReply() async throws -> Reply {
    let answer = try await self.promise.wait()
    if let error = answer.body.error {
      throw PeerAgentError(
        code: .remoteHandlerFailed,
        message: "'\(answer.from)' could not handle request \(self.id): \(error)"
      )
    }
    return Reply(id: self.id, text: answer.body.text, from: answer.from, roundTrip: .now - self.started)
  }

  /// Lets the peer forget the request and its reply.
  public func settle() {
    self.outbox.settle(id: self.id)
  }
}
