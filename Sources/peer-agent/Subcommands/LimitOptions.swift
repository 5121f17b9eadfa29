import ArgumentParser
import PeerAgent

/// What the listener gives any one remote at most (`Peer.Config.Limits`, and the
/// de-duplication window's bytes).
struct LimitOptions: ParsableArguments {
  @Option(name: .long, help: ArgumentHelp("Close a connection whose TLS handshake takes longer.", valueName: "SECONDS"))
  var handshakeTimeout: Double = 10

  @Option(name: .long, help: ArgumentHelp("Close a connection that opens no stream within this time.", valueName: "SECONDS"))
  var firstStreamTimeout: Double = 10

  @Option(
    name: .long,
    help: ArgumentHelp("Close a connection whose streams have all ended after this long; 0 keeps it.", valueName: "SECONDS")
  )
  var idleTimeout: Double = 300

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Close any connection this old (GOAWAY, then 10 s for its streams): its dialer reconnects with a full handshake against the current CA, revocation list and allowlist; 0 never.",
      valueName: "SECONDS"
    )
  )
  var maxConnectionAge: Double = 0

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The most connections the listener holds (at most the open-files limit less 64); beyond it, a connection that has not opened a stream yet gives way, else the new one is refused.",
      valueName: "N"
    )
  )
  var maxConnections: Int = 4096

  @Option(name: .long, help: ArgumentHelp("The most connections from one IP address.", valueName: "N"))
  var maxConnectionsPerAddress: Int = 64

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The most streams at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); a stream beyond it is refused (REFUSED_STREAM).",
      valueName: "N"
    )
  )
  var maxConcurrentStreams: Int = 128

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The most requests of one stream being handled or with replies not yet written; the stream is not read beyond it.",
      valueName: "N"
    )
  )
  var maxPendingReplies: Int = 256

  @Option(
    name: .long,
    help: ArgumentHelp("The most reply bytes of one stream not yet written; the stream is not read beyond it.", valueName: "BYTES")
  )
  var maxPendingReplyBytes: Int = 4 * 1024 * 1024

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The most bytes of replies remembered to answer repeats, all senders together; when full, the sender holding the most forgets its oldest.",
      valueName: "BYTES"
    )
  )
  var replyWindowBytes: Int = 256 * 1024 * 1024

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The most bytes of replies remembered for one sender: it forgets its own oldest beyond it, never another's.",
      valueName: "BYTES"
    )
  )
  var replyWindowBytesPerSender: Int = 32 * 1024 * 1024

  func validate() throws {
    for (flag, value) in [
      ("--handshake-timeout", self.handshakeTimeout), ("--first-stream-timeout", self.firstStreamTimeout),
    ] where !(value > 0 && value.isFinite) {
      throw ValidationError("\(flag) must be a number of seconds above 0 (got \(value))")
    }
    for (flag, value) in [("--idle-timeout", self.idleTimeout), ("--max-connection-age", self.maxConnectionAge)]
    where !(value >= 0 && value.isFinite) {
      throw ValidationError("\(flag) must be 0 (never) or a number of seconds (got \(value))")
    }
    for (flag, value) in [
      ("--max-connections", self.maxConnections), ("--max-connections-per-address", self.maxConnectionsPerAddress),
      ("--max-concurrent-streams", self.maxConcurrentStreams), ("--max-pending-replies", self.maxPendingReplies),
      ("--max-pending-reply-bytes", self.maxPendingReplyBytes), ("--reply-window-bytes", self.replyWindowBytes),
      ("--reply-window-bytes-per-sender", self.replyWindowBytesPerSender),
    ] where value < 1 {
      throw ValidationError("\(flag) must be at least 1 (got \(value))")
    }
    guard self.maxConcurrentStreams <= 65_535 else {
      throw ValidationError("--max-concurrent-streams must be at most 65535 (got \(self.maxConcurrentStreams))")
    }
  }

  /// Applies these options to `config`.
  func apply(to config: inout Peer.Config) {
    config.limits = Peer.Config.Limits(
      handshakeTimeout: .fromSeconds(self.handshakeTimeout),
      firstStreamTimeout: .fromSeconds(self.firstStreamTimeout),
      idleTimeout: self.idleTimeout > 0 ? .fromSeconds(self.idleTimeout) : nil,
      maximumConnectionAge: self.maxConnectionAge > 0 ? .fromSeconds(self.maxConnectionAge) : nil,
      maximumConnections: self.maxConnections,
      maximumConnectionsPerAddress: self.maxConnectionsPerAddress,
      maximumConcurrentStreams: self.maxConcurrentStreams,
      repliesPerStream: self.maxPendingReplies,
      replyBytesPerStream: self.maxPendingReplyBytes
    )
    config.delivery.replyBytes = self.replyWindowBytes
    config.delivery.replyBytesPerSender = self.replyWindowBytesPerSender
  }
}
