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
    let elapsed = ContinuousClock.now - Self.epoch
    let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
    self.lastHeard.store(max(1, nanoseconds), ordering: .relaxed)
  }

  /// How long the remote has been silent; `nil` while the stream is not watched.
  func silence(at now: ContinuousClock.Instant = .now) -> Duration? {
    let last = self.lastHeard.load(ordering: .relaxed)
    guard last > 0 else { return nil }
    return (now - Self.epoch) - .nanoseconds(last)
  }
}

/// The application heartbeat of one link: sends a heartbeat every interval on the link's
/// outbound stream (when the remote is known to answer them), watches the silence of the
/// remote on the link's inbound streams, reports ``LinkState/degraded`` and ``LinkState/ready``
/// as it changes, and throws ``Stalled`` when it reaches the timeout — the owner then closes the
/// link, and a dialer reconnects.
///
/// HTTP/2 keepalive pings only prove the connection is alive; a stream can stall (a stuck
/// remote, a full flow-control window) while pings still succeed. These heartbeats travel on
/// the streams themselves.
struct Heartbeat {
  struct Stalled: Error, CustomStringConvertible {
    var silence: Duration
    var description: String {
      let milliseconds = silence.components.seconds * 1000 + silence.components.attoseconds / 1_000_000_000_000_000
      return "no message from the remote for \(milliseconds) ms: the link stalled"
    }
  }

  let interval: Duration
  let timeout: Duration

  /// Runs until cancelled, or throws ``Stalled``.
  ///
  /// - Parameters:
  ///   - send: Sends one heartbeat, if the remote answers them.
  ///   - watched: The streams whose silence counts.
  ///   - report: Called when the state changes between ready and degraded.
  func run(
    send: () -> Void,
    watched: [LinkHealth],
    report: (LinkState) -> Void
  ) async throws {
    var state = LinkState.ready
    while !Task.isCancelled {
      try await Task.sleep(for: self.interval)
      send()
      let now = ContinuousClock.now
      let silence = watched.compactMap { $0.silence(at: now) }.max() ?? .zero
      if silence >= self.timeout {
        throw Stalled(silence: silence)
      }
      let next: LinkState = silence > self.interval * 2 ? .degraded : .ready
      if next != state {
        state = next
        report(next)
      }
    }
  }
}
