private import Synchronization

/// Hands out 0, 1, 2, … to concurrent takers.
final class TicketCounter: Sendable {
  private let value = Atomic<Int>(0)
  func take() -> Int { self.value.wrappingAdd(1, ordering: .relaxed).oldValue }
}
