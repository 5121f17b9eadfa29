/// A one-way latch: once ``set()``, it stays set, and every ``wait()`` — past or future —
/// returns.
///
/// It tells long-lived work to stop without cancelling its task: a dialer's session must shut
/// its gRPC client down gracefully before anything of it is cancelled (see ``Dialer``).
final class Signal: Sendable {
  private let promise = Promise<Void>()

  init() {}

  /// Whether the latch is set.
  var isSet: Bool { self.promise.isComplete }

  /// Sets the latch and wakes every waiter. Safe to call more than once, from anywhere.
  func set() {
    self.promise.complete(.success(()))
  }

  /// Returns once the latch is set, or when the waiting task is cancelled.
  func wait() async {
    try? await self.promise.wait()
  }

  /// Runs `body` until it returns or the latch is set (then `body` is cancelled, and what it
  /// throws for that is dropped).
  func unlessSet(_ body: @escaping @Sendable () async throws -> Void) async throws {
    if self.isSet { return }
    try await withThrowingTaskGroup(of: Bool.self) { group in
      group.addTask {
        try await body()
        return true
      }
      group.addTask {
        await self.wait()
        return false
      }
      defer { group.cancelAll() }
      _ = try await group.next()
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
