import Foundation
import Synchronization

/// Runs `count` operations with at most `window` in flight, timing each.
enum WindowedLoad {
  /// Runs `operation` `count` times, `window` at a time; returns the latencies in µs, the
  /// number of failures and the first failure.
  static func run(
    count: Int,
    window: Int,
    operation: @escaping @Sendable (Int) async throws -> Void
  ) async -> (latencies: [Double], errors: Int, firstError: String?, seconds: Double) {
    let next = TicketCounter()
    let started = ContinuousClock.now
    let results = await withTaskGroup(of: ([Double], Int, String?).self) { group in
      for _ in 0 ..< max(1, min(window, count)) {
        group.addTask {
          var latencies: [Double] = []
          var errors = 0
          var firstError: String?
          while true {
            let index = next.take()
            if index >= count { break }
            let start = ContinuousClock.now
            do {
              try await operation(index)
              latencies.append(Self.microseconds(.now - start))
            } catch {
              errors += 1
              firstError = firstError ?? "\(error)"
            }
          }
          return (latencies, errors, firstError)
        }
      }
      var all: ([Double], Int, String?) = ([], 0, nil)
      for await part in group {
        all.0 += part.0
        all.1 += part.1
        all.2 = all.2 ?? part.2
      }
      return all
    }
    return (results.0, results.1, results.2, Self.seconds(.now - started))
  }

  static func microseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e6 + Double(attoseconds) / 1e12
  }

  static func seconds(_ duration: Duration) -> Double {
    Self.microseconds(duration) / 1e6
  }
}

/// Matches replies to requests in order on one raw stream (the raw baseline has no ids), and
/// hands the writer one credit per reply so it keeps at most `window` in flight.
final class FIFOTimer: Sendable {
  private struct State {
    var starts: [ContinuousClock.Instant] = []
    var head = 0
    var latencies: [Double] = []
  }

  private let state = Mutex(State())
  let credits: AsyncStream<Void>
  private let creditContinuation: AsyncStream<Void>.Continuation

  init() {
    (self.credits, self.creditContinuation) = AsyncStream.makeStream()
  }

  func started() {
    let now = ContinuousClock.now
    self.state.withLock { $0.starts.append(now) }
  }

  func replied() {
    let now = ContinuousClock.now
    self.state.withLock { state in
      guard state.head < state.starts.count else { return }
      state.latencies.append(WindowedLoad.microseconds(now - state.starts[state.head]))
      state.head += 1
    }
    self.creditContinuation.yield()
  }

  func finish() { self.creditContinuation.finish() }

  var latencies: [Double] { self.state.withLock { $0.latencies } }

  /// Writes `count` messages with `write`, at most `window` unanswered, then waits for every
  /// reply. Returns the latencies (µs) and the wall time.
  func run(count: Int, window: Int, write: (Int) async throws -> Void) async throws -> (latencies: [Double], seconds: Double) {
    let start = ContinuousClock.now
    var credits = self.credits.makeAsyncIterator()
    for index in 0 ..< count {
      if index >= window {
        guard await credits.next() != nil else { break }
      }
      self.started()
      try await write(index)
    }
    for _ in 0 ..< min(window, count) {
      guard await credits.next() != nil else { break }
    }
    return (self.latencies, WindowedLoad.seconds(.now - start))
  }
}

/// Hands out 0, 1, 2, … to concurrent takers.
final class TicketCounter: Sendable {
  private let value = Atomic<Int>(0)
  func take() -> Int { self.value.wrappingAdd(1, ordering: .relaxed).oldValue }
}
