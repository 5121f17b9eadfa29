private import Synchronization

/// An outcome set once and awaited by any number of callers: a request's reply, the listener's
/// address, the reply a repeated request waits for, a ``Signal``.
final class Promise<Value: Sendable>: Sendable {
  private struct State {
    var outcome: Result<Value, any Error>?
    var waiters = WaiterQueue<Value>()
  }

  private let state = Mutex(State())

  init() {}

  /// Whether the outcome is set.
  var isComplete: Bool { self.state.withLock { $0.outcome != nil } }

  /// Sets the outcome, unless one is set already, and wakes every waiter. Returns whether this
  /// call set it.
  @discardableResult
  func complete(_ outcome: Result<Value, any Error>) -> Bool {
    let waiters: [WaiterQueue<Value>.Continuation]? = self.state.withLock { state in
      guard state.outcome == nil else { return nil }
      state.outcome = outcome
      return state.waiters.removeAll()
    }
    guard let waiters else { return false }
    for waiter in waiters { waiter.resume(with: outcome) }
    return true
  }

  /// Waits for the outcome. Cancelling the waiting task ends its wait (with
  /// `CancellationError`), not the promise.
  func wait() async throws -> Value {
    try await WaiterQueue.suspend { key, continuation in
      self.state.withLock { state in
        if let outcome = state.outcome { return outcome }
        if Task.isCancelled { return .failure(CancellationError()) }
        state.waiters.append(key, continuation)
        return nil
      }
    } onCancel: { key in
      self.state.withLock { $0.waiters.remove(key) }
    }
  }
}
