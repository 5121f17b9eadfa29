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
      health: Health
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
    }

    /// The defaults: no listener, nothing to dial, **plaintext** until you set ``security``
    /// (the command line requires mutual TLS unless `--insecure`), ``Requests/defaults``,
    /// ``Reconnect/defaults``, ``Shutdown/defaults``, ``Transport/defaults``,
    /// ``Delivery/defaults`` (in memory: the command line stores on disk by default),
    /// ``Health/defaults``.
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

    public init(trustRoots: PEMSource, certificateChain: PEMSource, privateKey: PEMSource) {
      self.trustRoots = trustRoots
      self.certificateChain = certificateChain
      self.privateKey = privateKey
    }
  }

  /// Request deadlines.
  public struct Requests: Sendable, Hashable {
    /// A request's time to live: how long ``Peer/send(_:to:timeout:)`` waits, by default, for
    /// room in the window, for the remote to connect, and for the reply — across reconnects and,
    /// with a durable store, restarts — before it fails with `timedOut` (or `unknownPeer` when
    /// the remote never connected).
    public var timeout: Duration

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

    /// The wait before attempt `attempt` (0 for the first retry).
    func delay(attempt: Int) -> Duration {
      let initial = Double(self.initialBackoff.components.seconds)
        + Double(self.initialBackoff.components.attoseconds) / 1e18
      let maximum = Double(self.maximumBackoff.components.seconds)
        + Double(self.maximumBackoff.components.attoseconds) / 1e18
      let base = min(maximum, initial * Foundation.pow(self.multiplier, Double(min(attempt, 62))))
      let jittered = base * (1 - Double.random(in: 0 ... max(0, min(1, self.jitter))))
      return .milliseconds(Int64(jittered * 1000))
    }
  }

  /// How the peer shuts down.
  public struct Shutdown: Sendable, Hashable {
    /// After ``Peer/beginGracefulShutdown()``, how long requests already sent (and requests
    /// being handled) may take to finish before they fail with `shuttingDown`.
    public var gracePeriod: Duration

    public init(gracePeriod: Duration) {
      self.gracePeriod = gracePeriod
    }

    /// `gracePeriod` 5 seconds.
    public static var defaults: Self { Self(gracePeriod: .seconds(5)) }
  }
}

extension Peer.Config {
  /// HTTP/2 transport tuning.
  public struct Transport: Sendable, Hashable {
    /// Flush coalescing: how long a write may wait for others to share one flush, and how many
    /// bytes it may gather; `nil` disables coalescing.
    public struct FlushCoalescing: Sendable, Hashable {
      public var maximumDelay: Duration
      public var maximumBytes: Int

      public init(maximumDelay: Duration, maximumBytes: Int) {
        self.maximumDelay = maximumDelay
        self.maximumBytes = maximumBytes
      }
    }

    /// Where the code of each stream runs: reading, PeerAgent's bookkeeping, the handler, and
    /// writing the reply.
    public struct Execution: Sendable, Hashable {
      enum Wrapped: Sendable, Hashable {
        case eventLoop
        case concurrencyPool
      }

      let wrapped: Wrapped

      /// On the event loop that owns the connection: the peer's connections share one event
      /// loop thread of their own, and a message goes from the socket to the handler and back
      /// without leaving it. The fastest round trip (no thread hops), but the handler shares
      /// that thread with every link of the peer: a handler that computes for long, or blocks,
      /// should move its work elsewhere (a `Task` of its own, or
      /// `withTaskExecutorPreference(globalConcurrentExecutor)`), or use ``concurrencyPool``.
      public static var eventLoop: Self { Self(wrapped: .eventLoop) }

      /// On Swift's concurrency pool, grpc-swift's own default: connections on NIO's shared
      /// event loops, a stream's code (and the handler) on the pool, and a thread hop each way
      /// for every message.
      public static var concurrencyPool: Self { Self(wrapped: .concurrencyPool) }
    }

    /// Flush coalescing on every connection; `nil` disables it.
    public var flushCoalescing: FlushCoalescing?
    /// Where each stream's code, handler included, runs.
    public var execution: Execution
    /// The largest gRPC message, encoded, that this peer sends or accepts, in both directions
    /// of every stream. A request above it fails at once with
    /// ``PeerAgentError/Code/messageTooLarge`` and is never queued; PeerAgent peers announce
    /// their limit, so a request above the remote's fails the same way instead of being written.
    public var maximumMessageBytes: Int

    public init(
      flushCoalescing: FlushCoalescing?,
      execution: Execution = .eventLoop,
      maximumMessageBytes: Int = 4 * 1024 * 1024
    ) {
      self.flushCoalescing = flushCoalescing
      self.execution = execution
      self.maximumMessageBytes = maximumMessageBytes
    }

    /// Flush coalescing with no delay and up to 64 KiB: writes made together still share a
    /// flush, but a lone request or reply is never held back. grpc-swift-nio-transport's own
    /// default waits up to 100 µs, which a ping-pong round trip pays on both sides. Streams run
    /// on their connection's event loop (``Execution/eventLoop``). Messages up to 4 MiB (gRPC's
    /// usual limit).
    public static var defaults: Self {
      Self(
        flushCoalescing: FlushCoalescing(maximumDelay: .zero, maximumBytes: 64 * 1024),
        execution: .eventLoop,
        maximumMessageBytes: 4 * 1024 * 1024
      )
    }
  }
}

extension Peer.Config {
  /// Delivery: where unanswered requests and the de-duplication window live, and the window of
  /// unanswered requests per remote peer.
  public struct Delivery: Sendable, Hashable {
    /// Where a peer keeps its outbox and its de-duplication window.
    public struct Storage: Sendable, Hashable {
      enum Wrapped: Sendable, Hashable {
        case inMemory
        case sqlite(directory: String)
      }

      let wrapped: Wrapped

      /// In memory: lost when the process ends. For tests and benchmarks.
      public static var inMemory: Self { Self(wrapped: .inMemory) }

      /// An embedded SQLite database in `directory` (created if needed, locked while the peer
      /// runs): a restart resends what was unanswered and handles no request twice.
      public static func sqlite(directory: String) -> Self { Self(wrapped: .sqlite(directory: directory)) }

      /// Whether what is stored survives the process.
      public var isDurable: Bool {
        if case .sqlite = self.wrapped { return true }
        return false
      }
    }

    /// What a receiver guarantees about running its handler once per request, when it
    /// crashes between calling the handler and recording the reply.
    public struct Handling: Sendable, Hashable {
      enum Wrapped: Sendable, Hashable {
        case atLeastOnce
        case atMostOnce
      }

      let wrapped: Wrapped

      /// The reply is recorded after the handler returns: a crash in between runs the handler
      /// again for the resent request (rarely: the window is the handler's own duration).
      /// Every request gets a real answer. The default.
      public static var atLeastOnce: Self { Self(wrapped: .atLeastOnce) }

      /// The acceptance of each request is recorded (on disk, with a durable store) before
      /// the handler runs: after a crash, a resent request that was accepted but has no
      /// recorded reply is answered with ``PeerAgentError/Code/outcomeUnknown`` and never
      /// handled again. For handlers that must never run twice (a payment, a command to a
      /// machine); costs one more write per request.
      public static var atMostOnce: Self { Self(wrapped: .atMostOnce) }
    }

    /// Where the outbox and the de-duplication window live.
    public var storage: Storage
    /// At-least-once (the default) or at-most-once handling across a crash.
    public var handling: Handling
    /// The most requests to one remote peer that may be unanswered at once; ``Peer/send(_:to:timeout:)``
    /// waits for room beyond it (backpressure), so memory stays bounded.
    public var maximumInFlight: Int
    /// How long a receiver remembers the reply it gave to a request id, to answer a repeat
    /// without calling the handler again. Keep it longer than senders' time to live.
    public var replyRetention: Duration
    /// The most replies remembered; the oldest are forgotten first.
    public var replyCapacity: Int

    public init(
      storage: Storage,
      maximumInFlight: Int,
      replyRetention: Duration,
      replyCapacity: Int,
      handling: Handling = .atLeastOnce
    ) {
      self.storage = storage
      self.handling = handling
      self.maximumInFlight = maximumInFlight
      self.replyRetention = replyRetention
      self.replyCapacity = replyCapacity
    }

    /// In memory, 1,024 unanswered requests per remote peer, replies remembered for an hour
    /// (at most 1,000,000), at-least-once handling.
    public static var defaults: Self {
      Self(
        storage: .inMemory,
        maximumInFlight: 1024,
        replyRetention: .seconds(3600),
        replyCapacity: 1_000_000,
        handling: .atLeastOnce
      )
    }
  }

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
