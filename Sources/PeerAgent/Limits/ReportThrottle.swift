private import Synchronization

/// Lets one report of each kind through per interval, and counts the ones held back, so that a
/// flood of refusals is a line every few seconds rather than a line per connection.
final class ReportThrottle: Sendable {
  private struct Kind {
    /// When the current interval began.
    var since: ContinuousClock.Instant
    /// Reports let through in it.
    var admitted: Int
    var suppressed: Int
  }

  private let interval: Duration
  private let kinds = Mutex<[String: Kind]>([:])

  init(interval: Duration = .seconds(10)) {
    self.interval = interval
  }

  /// Whether a report of `kind` is due — at most `allowing` per interval; if it is, how many
  /// were held back before it.
  func admit(_ kind: String, allowing: Int = 1, now: ContinuousClock.Instant = .now) -> Int? {
    self.kinds.withLock { kinds in
      if var seen = kinds[kind], now - seen.since < self.interval {
        guard seen.admitted < allowing else {
          seen.suppressed += 1
          kinds[kind] = seen
          return nil
        }
        seen.admitted += 1
        kinds[kind] = seen
        return 0
      }
      let suppressed = kinds[kind]?.suppressed ?? 0
      if kinds.count > 10_000 { kinds.removeAll() }
      kinds[kind] = Kind(since: now, admitted: 1, suppressed: 0)
      return suppressed
    }
  }
}
