private import Synchronization

/// The outcome of one outgoing request, set once, awaited by any number of callers.
final class DeliveryPromise: Sendable {
  typealias Outcome = Result<Answer, any Error>

  /// A reply and who gave it.
  struct Answer: Sendable {
    var body: ReplyBody
    var from: PeerIdentity
  }

  private struct State {
    var outcome: Outcome?
    var waiters: [Int: CheckedContinuation<Answer, any Error>] = [:]
    var nextWaiter = 0
  }

  private let state = Mutex(State())

  init() {}

  var isComplete: Bool { self.state.withLock { $0.outcome != nil } }

  /// Sets the outcome, unless one is set already; wakes every waiter.
  func complete(_ outcome: Outcome) {
    let waiters: [CheckedContinuation<Answer, any Error>] = self.state.withLock { state in
      guard state.outcome == nil else { return [] }
      state.outcome = outcome
      defer { state.waiters.removeAll() }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume(with: outcome) }
  }

  /// Waits for the outcome. Cancelling the waiting task stops the wait, not the request.
  func wait() async throws -> Answer {
    let key = self.state.withLock { state -> Int in
      state.nextWaiter += 1
      return state.nextWaiter
    }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        let outcome: Outcome? = self.state.withLock { state in
          if let outcome = state.outcome { return outcome }
          if Task.isCancelled { return .failure(CancellationError()) }
          state.waiters[key] = continuation
          return nil
        }
        if let outcome { continuation.resume(with: outcome) }
      }
    } onCancel: {
      let waiter = self.state.withLock { $0.waiters.removeValue(forKey: key) }
      waiter?.resume(throwing: CancellationError())
    }
  }
}
