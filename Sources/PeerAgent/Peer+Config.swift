private import Foundation

extension Peer {
  /// How a ``Peer`` runs: its mode, where it listens, what it dials, its TLS material, and the
  /// timings of requests, reconnection and shutdown.
  ///
  /// ```swift
  /// let config = Peer.Config.defaults(mode: .single) {
  ///   $0.listen = try PeerAddress(parsing: "127.0.0.1:7000")
  ///   $0.security = .mutualTLS(
  ///     trustRoots: .file("certs/ca.pem"),
  ///     certificateChain: .file("certs/hub.pem"),
  ///     privateKey: .file("certs/hub-key.pem")
  ///   )
  /// }
  /// ```
  public struct Config: Sendable {
    /// This peer's name, for logs. With mutual TLS the name in the peer's own certificate is
    /// used when this is `nil`.
    public var name: String?
    /// Single- or dual-channel.
    public var mode: Mode
    /// Where to listen, or `nil` not to listen. Port 0 picks a free port.
    public var listen: PeerAddress?
    /// The remote peers to dial.
    public var connect: [Target]
    /// Mutual TLS (the default) or, explicitly, plaintext.
    public var security: Security
    /// Request deadlines.
    public var requests: Requests
    /// How dialers retry.
    public var reconnect: Reconnect
    /// How the peer shuts down.
    public var shutdown: Shutdown
    /// HTTP/2 transport tuning, for the listener and the dialers alike.
    public var transport: Transport
    /// Where unanswered requests and recent replies are kept, and how many may be unanswered.
    public var delivery: Delivery
    /// Keepalive pings and heartbeats: how a dead or stalled link is noticed.
    public var health: Health
    /// What the listener gives any one remote at most: connections, streams, reply buffers.
    public var limits: Limits = .defaults
    /// Where metrics go: swift-metrics' global backend unless one is given.
    public var observability: Observability = .defaults
    /// The PostgreSQL database this hub shares with the other hubs of its cluster (registry,
    /// outbox, window); `nil` for a peer on its own. A peer with a cluster is made by
    /// ``PeerCluster/run(config:logger:handler:body:)``.
    public var cluster: Cluster?

    /// Creates a configuration; see ``defaults(mode:configure:)`` for the usual way.
    public init(
      name: String?,
      mode: Mode,
      listen: PeerAddress?,
      connect: [Target],
      security: Security,
      requests: Requests,
      reconnect: Reconnect,
      shutdown: Shutdown,
      transport: Transport,
      delivery: Delivery,
      health: Health,
      limits: Limits = .defaults
    ) {
      self.name = name
      self.mode = mode
      self.listen = listen
      self.connect = connect
      self.security = security
      self.requests = requests
      self.reconnect = reconnect
      self.shutdown = shutdown
      self.transport = transport
      self.delivery = delivery
      self.health = health
      self.limits = limits
    }

    /// The defaults: no listener, nothing to dial, **plaintext** until you set ``security``
    /// (the command line requires mutual TLS unless `--insecure`), ``Requests/defaults``,
    /// ``Reconnect/defaults``, ``Shutdown/defaults``, ``Transport/defaults``,
    /// ``Delivery/defaults`` (in memory: the command line stores on disk by default),
    /// ``Health/defaults``, ``Limits/defaults``.
    public static func defaults(
      mode: Mode,
      configure: (_ config: inout Self) -> Void = { _ in }
    ) -> Self {
      var config = Self(
        name: nil,
        mode: mode,
        listen: nil,
        connect: [],
        security: .plaintext,
        requests: .defaults,
        reconnect: .defaults,
        shutdown: .defaults,
        transport: .defaults,
        delivery: .defaults,
        health: .defaults
      )
      configure(&config)
      return config
    }
  }
}

extension Peer.Config {
  /// Transport security: mutual TLS, or plaintext.
  public struct Security: Sendable, Hashable {
    enum Wrapped: Sendable, Hashable {
      case plaintext
      case mutualTLS(MutualTLS)
    }

    let wrapped: Wrapped

    /// No TLS: nothing is verified, and links are named by their remote address.
    public static var plaintext: Self { Self(wrapped: .plaintext) }

    /// Mutual TLS: the listener requires a client certificate chained to `trustRoots`, the
    /// dialer verifies the listener's certificate, and each side's identity is the name in the
    /// other's certificate. The system trust store is never used.
    public static func mutualTLS(_ config: MutualTLS) -> Self {
      Self(wrapped: .mutualTLS(config))
    }

    /// Mutual TLS from three PEM sources.
    public static func mutualTLS(
      trustRoots: PEMSource,
      certificateChain: PEMSource,
      privateKey: PEMSource
    ) -> Self {
      .mutualTLS(
        MutualTLS(trustRoots: trustRoots, certificateChain: certificateChain, privateKey: privateKey)
      )
    }

    /// Changes the mutual TLS settings; does nothing in plaintext.
    public mutating func updateMutualTLS(_ update: (inout MutualTLS) -> Void) {
      guard case .mutualTLS(var tls) = self.wrapped else { return }
      update(&tls)
      self = .mutualTLS(tls)
    }

    /// Whether this is mutual TLS.
    public var isMutualTLS: Bool {
      if case .mutualTLS = self.wrapped { return true }
      return false
    }
  }

  /// The PEM material for mutual TLS.
  public struct MutualTLS: Sendable, Hashable {
    /// The deployment's CA certificate(s): the only roots trusted.
    public var trustRoots: PEMSource
    /// This peer's certificate (then any intermediates).
    public var certificateChain: PEMSource
    /// This peer's private key.
    public var privateKey: PEMSource
    /// Who is served and talked to, and which certificates are revoked.
    public var authorization: Authorization
    /// How long before this peer's certificate expires a warning is logged (at start and on
    /// every reload).
    public var expiryWarning: Duration
    /// How often the files are checked for changes (a change reloads them, as
    /// ``Peer/reloadSecurity()`` does); `nil`: only on request.
    public var watchInterval: Duration? = .seconds(2)

    /// Mutual TLS from the CA, this peer's certificate chain and its private key.
    public init(
      trustRoots: PEMSource,
      certificateChain: PEMSource,
      privateKey: PEMSource,
      authorization: Authorization = Authorization(),
      expiryWarning: Duration = .seconds(14 * 86_400)
    ) {
      self.trustRoots = trustRoots
      self.certificateChain = certificateChain
      self.privateKey = privateKey
      self.authorization = authorization
      self.expiryWarning = expiryWarning
    }
  }

  /// Which verified peers are served and talked to. Files are re-read by
  /// ``Peer/reloadSecurity()`` (SIGHUP, and when they change, for `peer-agent run`).
  public struct Authorization: Sendable, Hashable {
    /// Only these identities (and, where pinned, keys) are served and dialed; `nil`: every
    /// peer of the CA.
    public var allowlist: AllowlistSource?
    /// A certificate revocation list (PEM or DER) of the CA: the certificates it lists are
    /// refused at the handshake.
    public var revocationList: PEMSource?

    /// Every peer of the CA, none revoked; or as given.
    public init(allowlist: AllowlistSource? = nil, revocationList: PEMSource? = nil) {
      self.allowlist = allowlist
      self.revocationList = revocationList
    }
  }

  /// Where an allowlist comes from: entries given directly, or a file of them (one or more per
  /// line, `#` comments).
  public struct AllowlistSource: Sendable, Hashable, CustomStringConvertible {
    enum Wrapped: Sendable, Hashable {
      case entries(Allowlist)
      case file(String)
    }

    let wrapped: Wrapped

    /// The allowlist itself.
    public static func entries(_ allowlist: Allowlist) -> Self { Self(wrapped: .entries(allowlist)) }

    /// An allowlist read from the file at `path` (``Allowlist/init(parsing:)``).
    public static func file(_ path: String) -> Self { Self(wrapped: .file(path)) }

    /// The file's path, or `<entries>`.
    public var description: String {
      switch self.wrapped {
      case .entries: return "<entries>"
      case .file(let path): return path
      }
    }
  }

  /// Request deadlines.
  public struct Requests: Sendable, Hashable {
    /// A request's time to live: how long ``Peer/send(_:to:timeout:)`` waits, by default, for
    /// room in the window, for the remote to connect, and for the reply — across reconnects and,
    /// with a durable store, restarts — before it fails with `timedOut` (or `unknownPeer` when
    /// the remote never connected).
    public var timeout: Duration

    /// Creates request settings with a time to live of `timeout`.
    public init(timeout: Duration) {
      self.timeout = timeout
    }

    /// `timeout` 30 seconds.
    public static var defaults: Self { Self(timeout: .seconds(30)) }
  }

  /// How a dialer retries a remote peer that is not reachable (yet) or went away: exponential
  /// backoff with jitter.
  public struct Reconnect: Sendable, Hashable {
    /// The first wait.
    public var initialBackoff: Duration
    /// The longest wait.
    public var maximumBackoff: Duration
    /// Each wait is this many times the previous one.
    public var multiplier: Double
    /// Each wait is randomly shortened by up to this fraction (0 – 1), so that many dialers
    /// do not retry in step.
    public var jitter: Double
    /// The longest a dialer's connection may take to open its first stream (TCP, the TLS
    /// handshake and the start of HTTP/2); beyond it the attempt is abandoned and retried, so a
    /// listener that accepts connections and never answers cannot hold a dialer.
    public var connectTimeout: Duration

    /// Creates reconnection settings; see ``defaults`` for the usual values.
    public init(
      initialBackoff: Duration,
      maximumBackoff: Duration,
      multiplier: Double,
      jitter: Double,
      connectTimeout: Duration = .seconds(10)
    ) {
      self.initialBackoff = initialBackoff
      self.maximumBackoff = maximumBackoff
      self.multiplier = multiplier
      self.jitter = jitter
      self.connectTimeout = connectTimeout
    }

    /// 100 ms first, doubling up to 5 s, each wait shortened at random by up to half: when a
    /// hub with many dialers restarts, they come back spread over the wait, not in one burst.
    /// A connection gets 10 s to open its first stream.
    public static var defaults: Self {
      Self(
        initialBackoff: .milliseconds(100),
        maximumBackoff: .seconds(5),
        multiplier: 2,
        jitter: 0.5,
        connectTimeout: .seconds(10)
      )
    }

    /// An attempt whose wait is ``maximumBackoff`` (less jitter), whatever the settings.
    static let attemptAtMaximum = 62

    /// The wait before attempt `attempt` (0 for the first retry).
    func delay(attempt: Int) -> Duration {
      let initial = self.initialBackoff.seconds
      let maximum = self.maximumBackoff.seconds
      let base = min(maximum, initial * Foundation.pow(self.multiplier, Double(min(attempt, Self.attemptAtMaximum))))
      let jittered = base * (1 - Double.random(in: 0 ... max(0, min(1, self.jitter))))
      return .fromSeconds(jittered)
    }
  }

  /// How the peer shuts down.
  public struct Shutdown: Sendable, Hashable {
    /// After ``Peer/beginGracefulShutdown()``, how long requests already sent (and requests
    /// being handled) may take to finish before they fail with `shuttingDown`.
    public var gracePeriod: Duration

    /// Creates shutdown settings with a grace period of `gracePeriod`.
    public init(gracePeriod: Duration) {
      self.gracePeriod = gracePeriod
    }

    /// `gracePeriod` 5 seconds.
    public static var defaults: Self { Self(gracePeriod: .seconds(5)) }
  }
}
