private import Synchronization

/// Lets one report of each kind through per interval, and counts the ones held back, so that a
/// flood of refusals is a line every few seconds rather than a line per connection.
final class ReportThrottle: Sendable {
  private struct Kind {
    var last: ContinuousClock.Instant
    var suppressed: Int
  }

  private let interval: Duration
  private let kinds = Mutex<[String: Kind]>([:])

  init(interval: Duration = .seconds(10)) {
    self.interval = interval
  }

  /// Whether a report of `kind` is due; if it is, how many were held back since the last.
  func admit(_ kind: String, now: ContinuousClock.Instant = .now) -> Int? {
    self.kinds.withLock { kinds in
      if var seen = kinds[kind], now - seen.last < self.interval {
        seen.suppressed += 1
        kinds[kind] = seen
        return nil
      }
      let suppressed = kinds[kind]?.suppressed ?? 0
      if kinds.count > 1_000 { kinds.removeAll() }
      kinds[kind] = Kind(last: now, suppressed: 0)
      return suppressed
    }
  }
}
