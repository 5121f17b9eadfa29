private import Synchronization

/// When the remote was last heard on one stream, and whether it heartbeats at all.
///
/// A stream is watched only once the remote has shown it is a PeerAgent that heartbeats (its
/// first heartbeat, or its announcement in metadata): the article's programs and other older
/// peers never heartbeat, and their silence means nothing.
final class LinkHealth: Sendable {
  private static let epoch = ContinuousClock.now
  /// Nanoseconds since `epoch` at the last message; 0 while unarmed.
  private let lastHeard = Atomic<Int64>(0)

  init() {}

  /// The remote was heard: any message on the stream. Counts only once the stream is watched.
  func heard() {
    guard self.lastHeard.load(ordering: .relaxed) != 0 else { return }
    self.store()
  }

  /// Starts watching (if not yet), as if the remote had just been heard: the remote announced
  /// heartbeats, or sent one.
  func arm() {
    self.store()
  }

  private func store() {
    self.lastHeard.store(max(1, (ContinuousClock.now - Self.epoch).nanoseconds), ordering: .relaxed)
  }

  /// How long the remote has been silent; `nil` while the stream is not watched.
  func silence(at now: ContinuousClock.Instant = .now) -> Duration? {
    let last = self.lastHeard.load(ordering: .relaxed)
    guard last > 0 else { return nil }
    return (now - Self.epoch) - .nanoseconds(last)
  }
}
