/// Every conversion between `Duration` and plain numbers that PeerAgent makes, in one place.
extension Duration {
  /// The duration in seconds, with its fraction.
  package var seconds: Double {
    Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
  }

  /// The duration in whole milliseconds, rounded towards zero.
  package var milliseconds: Int64 {
    self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000
  }

  /// The duration in whole nanoseconds, rounded towards zero.
  package var nanoseconds: Int64 {
    self.components.seconds * 1_000_000_000 + self.components.attoseconds / 1_000_000_000
  }

  /// The duration in milliseconds, with its fraction (for figures shown to people).
  package var fractionalMilliseconds: Double {
    self.seconds * 1000
  }

  /// The longest duration made from a number of seconds: about 31 years. Longer ones (an
  /// option of `1e20`) are cut to it, so that no conversion down the line — to NIO's
  /// nanoseconds in an `Int64` — overflows and traps.
  package static let longestSeconds: Double = 1e9

  /// `seconds` (which may be fractional) as a duration, to the millisecond, at most
  /// ``longestSeconds``; not a number is zero.
  package static func fromSeconds(_ seconds: Double) -> Duration {
    guard !seconds.isNaN else { return .zero }
    return .milliseconds(Int64(min(max(seconds, -Self.longestSeconds), Self.longestSeconds) * 1000))
  }

  /// `seconds` (which may be fractional or negative) as a duration, to the millisecond; a
  /// negative amount is zero.
  package static func clampedSeconds(_ seconds: Double) -> Duration {
    self.fromSeconds(max(0, seconds))
  }
}
