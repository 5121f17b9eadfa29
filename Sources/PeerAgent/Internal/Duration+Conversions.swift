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

  /// `seconds` (which may be fractional) as a duration, to the millisecond.
  package static func fromSeconds(_ seconds: Double) -> Duration {
    .milliseconds(Int64(seconds * 1000))
  }

  /// `seconds` (which may be fractional or negative) as a duration, to the millisecond; a
  /// negative amount is zero.
  package static func clampedSeconds(_ seconds: Double) -> Duration {
    .milliseconds(Int64(max(0, seconds) * 1000))
  }
}
