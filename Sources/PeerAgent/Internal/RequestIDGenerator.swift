private import Synchronization

/// Request ids: unique across runs and peers (a random 64-bit prefix per run) and increasing
/// within a run (a counter). Receivers de-duplicate by them.
final class RequestIDGenerator: Sendable {
  private let prefix: String
  private let counter = Atomic<UInt64>(0)

  init() {
    self.prefix = String(UInt64.random(in: .min ... .max), radix: 16)
  }

  /// A new id.
  func next() -> String {
    let n = self.counter.wrappingAdd(1, ordering: .relaxed).newValue
    return "\(self.prefix)-\(n)"
  }
}
