private import Synchronization

/// A one-way latch: once ``set()``, it stays set, and every ``wait()`` — past or future —
/// returns.
///
/// It tells long-lived work to stop without cancelling its task: a dialer's session must shut
/// its gRPC client down gracefully before anything of it is cancelled (see ``Dialer``).
final class Signal: Sendable {
  private struct State {
    var isSet = false
    var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    var nextWaiter = 0
  }

  private let state = Mutex(State())

  init() {}

  var isSet: Bool { self.state.withLock { $0.isSet } }

  /// Sets the latch and wakes every waiter. Safe to call more than once, from anywhere.
  func set() {
    let waiters = self.state.withLock { state in
      state.isSet = true
      defer { state.waiters.removeAll() }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Returns once the latch is set, or when the waiting task is cancelled.
  func wait() async {
    let key = self.state.withLock { state -> Int in
      state.nextWaiter += 1
      return state.nextWaiter
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let now = self.state.withLock { state in
          if state.isSet || Task.isCancelled { return true }
          state.waiters[key] = continuation
          return false
        }
        if now { continuation.resume() }
      }
    } onCancel: {
      let waiter = self.state.withLock { $0.waiters.removeValue(forKey: key) }
      waiter?.resume()
    }
  }

  /// Sleeps for `duration`, or less if any of `signals` is set first (or the task is
  /// cancelled).
  static func sleep(for duration: Duration, unlessAnyOf signals: [Signal]) async {
    if signals.contains(where: \.isSet) { return }
    await withTaskGroup(of: Void.self) { group in
      group.addTask { try? await Task.sleep(for: duration) }
      for signal in signals {
        group.addTask { await signal.wait() }
      }
      // The first child to end ends the sleep.
      await group.next()
      group.cancelAll()
    }
  }
}
