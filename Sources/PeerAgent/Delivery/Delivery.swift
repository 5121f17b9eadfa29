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

  let promise: Promise<Answer>
  let started: ContinuousClock.Instant
  let outbox: Outbox
  /// The trace context the request carries (W3C `traceparent`), when the peer traces.
  public internal(set) var traceContext: [String: String] = [:]

  /// Waits for the reply, then lets the peer forget the request.
  ///
  /// Cancelling the waiting task ends the wait, not the request: it is still delivered, but
  /// no longer resumed after a restart.
  ///
  /// - Returns: The reply, who sent it, and the time since the request was accepted.
  /// - Throws: ``PeerAgentError``: `timedOut`, `unknownPeer`, `remoteHandlerFailed`,
  ///   `outcomeUnknown`, `messageTooLarge`,
  ///   `shuttingDown` (with a durable store the request stays for the next run); or
  ///   `CancellationError`.
  public func reply() async throws -> Reply {
    let outcome = await self.outcome()
    self.settle(after: outcome)
    return try outcome.get()
  }

  /// Waits for the reply, hands it (or the failure) to `report`, and only then lets the peer
  /// forget the request: a crash before `report` returns hands the reply over again after the
  /// restart, through ``Peer/recoveredDeliveries``, rather than losing it.
  public func reply(reporting report: (Result<Reply, any Error>) -> Void) async {
    let outcome = await self.outcome()
    report(outcome)
    self.settle(after: outcome)
  }

  private func outcome() async -> Result<Reply, any Error> {
    do {
      let answer = try await self.promise.wait()
      let from = answer.from ?? .verified(self.peer)
      if let error = answer.error {
        if answer.code == "\(PeerAgentError.Code.outcomeUnknown)" {
          throw PeerAgentError(code: .outcomeUnknown, message: "'\(from)': \(error)")
        }
        throw PeerAgentError(
          code: .remoteHandlerFailed,
          message: "'\(from)' could not handle request \(self.id): \(error)"
        )
      }
      return .success(Reply(id: self.id, text: answer.text, from: from, roundTrip: .now - self.started))
    } catch {
      return .failure(error)
    }
  }

  /// Forgets the request once its outcome is known — except a shutdown, which leaves it in
  /// the store for the next run.
  private func settle(after outcome: Result<Reply, any Error>) {
    if case .failure(let error) = outcome, (error as? PeerAgentError)?.code == .shuttingDown { return }
    self.outbox.settle(id: self.id)
  }
}
