extension Peer.Config {
  /// How a dead or stalled link is noticed.
  ///
  /// Two mechanisms, because either alone lies: HTTP/2 keepalive pings notice a dead
  /// connection but not a stalled stream; heartbeats on the long-lived streams notice both,
  /// but only with a PeerAgent on the other side.
  public struct Health: Sendable, Hashable {
    /// How often a heartbeat goes out on each long-lived stream; `nil` disables heartbeats.
    public var heartbeatInterval: Duration?
    /// The silence after which a link is closed (and a dialer reconnects). A link is
    /// ``LinkState/degraded`` after two intervals of silence.
    public var heartbeatTimeout: Duration
    /// How often a dialer sends an HTTP/2 keepalive ping; `nil` disables them. A listener
    /// accepts pings this often (and up to twice as often) without answering GOAWAY.
    public var keepaliveInterval: Duration?
    /// How long a ping may go unanswered before the connection is closed.
    public var keepaliveTimeout: Duration

    /// Creates a health configuration; see ``defaults`` for the usual values.
    public init(
      heartbeatInterval: Duration?,
      heartbeatTimeout: Duration,
      keepaliveInterval: Duration?,
      keepaliveTimeout: Duration
    ) {
      self.heartbeatInterval = heartbeatInterval
      self.heartbeatTimeout = heartbeatTimeout
      self.keepaliveInterval = keepaliveInterval
      self.keepaliveTimeout = keepaliveTimeout
    }

    /// Heartbeats every 2 s, a link closed after 6 s of silence; keepalive pings every 10 s,
    /// answered within 5 s.
    public static var defaults: Self {
      Self(
        heartbeatInterval: .seconds(2),
        heartbeatTimeout: .seconds(6),
        keepaliveInterval: .seconds(10),
        keepaliveTimeout: .seconds(5)
      )
    }
  }
}
