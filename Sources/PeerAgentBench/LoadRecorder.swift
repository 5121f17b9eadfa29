private import Foundation
private import Synchronization
internal import PeerAgent

/// Runs `count` operations with at most `window` in flight, timing each.
enum WindowedLoad {
  typealias Outcome = (latencies: [Double], errors: Int, firstError: String?, seconds: Double)

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
    duration.seconds * 1e6
  }

  static func seconds(_ duration: Duration) -> Double {
    Self.microseconds(duration) / 1e6
  }
}
