private import Synchronization

/// At most `limit` holders at once; ``acquire()`` waits for a free place, first come first
/// served.
final class ConcurrencyLimit: Sendable {
  private struct State {
    var available: Int
    var waiters = WaiterQueue<Void>()
  }

  private let state: Mutex<State>

  init(_ limit: Int) {
    self.state = Mutex(State(available: limit))
  }

  /// Takes a place, waiting for one if none is free.
  ///
  /// - Throws: `CancellationError` if the task is cancelled while it waits.
  func acquire() async throws {
    try await WaiterQueue<Void>.suspend { key, continuation in
      self.state.withLock { state in
        if state.available > 0 {
          state.available -= 1
          return .success(())
        }
        state.waiters.append(key, continuation)
        return nil
      }
    } onCancel: { key in
      self.state.withLock { $0.waiters.remove(key) }
    }
  }

  /// Gives a place back: to the longest waiting caller, if any.
  func release() {
    let next = self.state.withLock { state in
      guard let waiter = state.waiters.popFirst() else {
        state.available += 1
        return nil as WaiterQueue<Void>.Continuation?
      }
      return waiter  // the place passes straight to it
    }
    next?.resume()
  }
}
