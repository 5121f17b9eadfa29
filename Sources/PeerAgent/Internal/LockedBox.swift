private import Synchronization

/// A value shared between tasks, behind a lock.
final class LockedBox<Value: Sendable>: Sendable {
  private let value: Mutex<Value>

  init(_ value: Value) {
    self.value = Mutex(value)
  }

  func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R {
    self.value.withLock { body(&$0) }
  }

  var current: Value { self.value.withLock { $0 } }
}
