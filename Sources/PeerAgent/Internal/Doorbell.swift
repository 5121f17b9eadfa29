internal import Synchronization

/// Wakes one waiting loop: ``ring()`` any number of times, from anywhere; the loop's next
/// ``wait(atMost:)`` returns at once if it was rung since the last one returned, else when it
/// is rung, after `atMost`, or on cancellation. Rings are not counted: a loop woken once does
/// everything that was asked before it looks.
package final class Doorbell: Sendable {
  private let current = Mutex(Signal())

  package init() {}

  package func ring() {
    self.current.withLock { $0 }.set()
  }

  package func wait(atMost duration: Duration) async {
    let signal = self.current.withLock { $0 }
    await Signal.sleep(for: duration, unlessAnyOf: [signal])
    // A ring after this swap sets the new signal: the next wait returns at once.
    self.current.withLock { current in
      if current.isSet { current = Signal() }
    }
  }
}
