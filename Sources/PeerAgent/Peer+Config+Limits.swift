extension Peer.Config {
  /// What one listener gives any remote at most, so that a hostile or broken client cannot
  /// take memory, descriptors or service from the others.
  ///
  /// Every limit refuses cleanly and says so in the log (at most once per interval per kind):
  /// a connection beyond a cap is closed before its handshake, a stream beyond
  /// ``maximumConcurrentStreams`` is reset with `REFUSED_STREAM` (the connection's other calls go
  /// on), a stream whose remote stops reading its replies stops being read.
  public struct Limits: Sendable, Hashable {
    /// The longest a TLS handshake may take before the connection is closed.
    public var handshakeTimeout: Duration
    /// The longest a connection may stay open without opening a stream (a peer's dialer opens
    /// its streams at once).
    public var firstStreamTimeout: Duration
    /// How long a connection whose streams have all ended is kept; `nil` keeps it.
    public var idleTimeout: Duration?
    /// The longest any connection lives, busy or not; `nil` for no limit. At this age the
    /// listener sends `GOAWAY`; streams still open get ``connectionAgeGrace`` to finish, then
    /// the connection closes and the dialer reconnects — with a full handshake, checked against
    /// the material current then (unanswered requests are sent again on the new link).
    public var maximumConnectionAge: Duration?
    /// How long the streams of a connection past ``maximumConnectionAge`` may go on.
    public var connectionAgeGrace: Duration
    /// The most connections the listener holds at once. At the cap, a new connection replaces
    /// the oldest one that has not finished its handshake or opened a stream, if any; else it
    /// is refused. Clamped at start to the open-files limit, less a reserve.
    public var maximumConnections: Int
    /// The most connections from one IP address at once.
    public var maximumConnectionsPerAddress: Int
    /// The most streams open at once on one connection, advertised in HTTP/2 `SETTINGS`; a
    /// stream beyond it is reset with `REFUSED_STREAM`.
    public var maximumConcurrentStreams: Int
    /// The most requests of one stream being handled or waiting for their replies to be
    /// written; the stream is not read beyond it, so HTTP/2 flow control slows the sender.
    public var repliesPerStream: Int
    /// The most reply bytes of one stream waiting to be written; the stream is not read beyond
    /// it.
    public var replyBytesPerStream: Int

    /// Creates limits; see ``defaults`` for the usual values.
    public init(
      handshakeTimeout: Duration = .seconds(10),
      firstStreamTimeout: Duration = .seconds(10),
      idleTimeout: Duration? = .seconds(300),
      maximumConnectionAge: Duration? = nil,
      connectionAgeGrace: Duration = .seconds(10),
      maximumConnections: Int = 4096,
      maximumConnectionsPerAddress: Int = 64,
      maximumConcurrentStreams: Int = 128,
      repliesPerStream: Int = 256,
      replyBytesPerStream: Int = 4 * 1024 * 1024
    ) {
      self.handshakeTimeout = handshakeTimeout
      self.firstStreamTimeout = firstStreamTimeout
      self.idleTimeout = idleTimeout
      self.maximumConnectionAge = maximumConnectionAge
      self.connectionAgeGrace = connectionAgeGrace
      self.maximumConnections = maximumConnections
      self.maximumConnectionsPerAddress = maximumConnectionsPerAddress
      self.maximumConcurrentStreams = maximumConcurrentStreams
      self.repliesPerStream = repliesPerStream
      self.replyBytesPerStream = replyBytesPerStream
    }

    /// Handshakes within 10 s, a first stream within 10 s, idle connections closed after
    /// 5 minutes, no maximum age, 4,096 connections (64 per address), 128 streams per connection, 256 replies
    /// or 4 MiB of replies pending per stream.
    public static var defaults: Self { Self() }
  }
}
