internal import ContactProto
internal import GRPCCore

/// The application heartbeat of a link: its announcement in stream metadata, its arming, its
/// answer, and the loop that sends one every interval on the link's outbound stream (when the
/// remote is known to answer them), watches the silence of the remote on the link's inbound
/// streams, reports ``LinkState/degraded`` and ``LinkState/ready`` as it changes, and throws
/// ``Stalled`` when it reaches the timeout — the owner then closes the link, and a dialer
/// reconnects.
///
/// HTTP/2 keepalive pings only prove the connection is alive; a stream can stall (a stuck
/// remote, a full flow-control window) while pings still succeed. These heartbeats travel on
/// the streams themselves. Older peers (the article's programs) never announce heartbeats,
/// never get one, and their silence means nothing.
struct Heartbeat: Sendable {
  /// The metadata key by which PeerAgent peers announce that they send and answer heartbeats
  /// (value: the sender's heartbeat interval in milliseconds).
  static let metadataKey = "peer-agent-heartbeat"

  /// The link stalled: the remote was silent for the whole timeout.
  struct Stalled: Error, CustomStringConvertible {
    /// How long the remote was silent.
    var silence: Duration
    var description: String {
      "no message from the remote for \(self.silence.milliseconds) ms: the link stalled"
    }
  }

  /// The time between two heartbeats.
  let interval: Duration
  /// The silence after which the link is closed.
  let timeout: Duration

  /// The heartbeat of `health`, unless it disables heartbeats.
  init?(_ health: Peer.Config.Health) {
    guard let interval = health.heartbeatInterval else { return nil }
    self.interval = interval
    self.timeout = health.heartbeatTimeout
  }

  /// Announces this peer's heartbeats in the metadata of a stream it opens or answers.
  func announce(in metadata: inout Metadata) {
    metadata.addString("\(self.interval.milliseconds)", forKey: Self.metadataKey)
  }

  /// Whether the other side of a stream announced heartbeats in its metadata.
  static func isAnnounced(in metadata: Metadata) -> Bool {
    metadata[stringValues: Self.metadataKey].contains { _ in true }
  }

  /// The answer to a heartbeat received on an inbound stream, written by PeerAgent, never by
  /// the handler.
  static var answer: Contact_Result { .heartbeatAnswer }

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

  /// Runs the heartbeat of `link`: heartbeats on the link while the remote answers them, the
  /// silence of `link` and of `alsoWatched` counted, state changes reported to `table`.
  func run(on link: Link, alsoWatching alsoWatched: [LinkHealth] = [], reportingTo table: LinkTable) async throws {
    let name = link.identity.name
    try await self.run(
      send: { if link.remoteHeartbeats { link.enqueue(.heartbeat) } },
      watched: [link.health] + alsoWatched,
      report: { table.setState($0, of: name, reason: "heartbeats are late") }
    )
  }
}
