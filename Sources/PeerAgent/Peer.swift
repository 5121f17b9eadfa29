public import Logging
public import ServiceLifecycle

/// One process's endpoint: a gRPC listener, dialers, or both, that can send requests to any
/// connected remote peer and hands every request it receives to one handler — in either
/// direction, in single- or dual-channel mode.
///
/// ## Modes
///
/// In **single-channel** mode only one side listens. The dialer opens `getTask` (the listener
/// pushes its requests down that stream) and `tellResult` (the dialer's replies), and sends its
/// own requests on `sendStatus`. In **dual-channel** mode both sides listen and both dial, and
/// each sends on the other's `sendStatus`. A listener always serves the whole `Contact`
/// service, so it accepts single-channel dialers and dual-channel peers at once.
///
/// ## Identity
///
/// With mutual TLS, a remote peer is known by the name in its verified certificate; requests
/// carry it to the handler (``IncomingRequest/from``) and ``send(_:to:timeout:)`` addresses
/// peers by it. In plaintext a link is named by its remote address.
///
/// ## Example
///
/// ```swift
/// let hub = try Peer(config: .defaults(mode: .single) {
///   $0.listen = PeerAddress(host: "127.0.0.1", port: 7000)
///   $0.security = .mutualTLS(trustRoots: .file("certs/ca.pem"),
///                            certificateChain: .file("certs/hub.pem"),
///                            privateKey: .file("certs/hub-key.pem"))
/// }) { request in
///   "ack: \(request.text)"
/// }
/// try await withThrowingDiscardingTaskGroup { group in
///   group.addTask { try await hub.run() }
///   let reply = try await hub.send("status?", to: "edge")
///   print(reply.text, reply.roundTrip)
///   hub.beginGracefulShutdown()
/// }
/// ```
public final class Peer: Sendable {
  /// Answers one request from a remote peer. A thrown error is sent back to the sender, who
  /// sees it as ``PeerAgentError/Code/remoteHandlerFailed``.
  public typealias Handler = @Sendable (IncomingRequest) async throws -> String

  /// The configuration the peer was created with.
  public let config: Config
  /// This peer's name: ``Config/name``, else the name in its certificate, else `peer`.
  public let name: String
  /// The requests a previous run on the same durable store left unanswered, loaded when the
  /// peer was created. They are sent again once their remotes connect; wait for their replies
  /// with ``Delivery/reply()``. Empty with an in-memory store.
  public let recoveredDeliveries: [Delivery]

  /// What the link layer is given of this peer.
  let context: LinkContext
  private let lifecycle = PeerLifecycle()
  private let requestIDs = RequestIDs()

  /// Creates a peer, reading and checking its TLS material now, so that bad files fail here
  /// with a clear message rather than at the first handshake, and opening the store that
  /// ``Config/Delivery/storage`` names.
  ///
  /// - Parameters:
  ///   - config: Mode, addresses, security and timings.
  ///   - logger: Where the peer logs; every line carries `peer` (this peer) and, about a link,
  ///     `link` (the remote identity).
  ///   - handler: Answers every request from every remote peer.
  /// - Throws: ``PeerAgentError`` with `invalidConfiguration` or `invalidCertificate`.
  public convenience init(
    config: Config,
    logger: Logger = Logger(label: "peer-agent"),
    handler: @escaping Handler
  ) throws {
    if config.cluster != nil {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "a peer with a cluster database is made by PeerCluster.run(config:handler:body:), which connects to it first"
      )
    }
    try self.init(config: config, store: try config.delivery.makeStore(), logger: logger, handler: handler)
  }

  /// Creates a peer on a given ``DeliveryStore`` (``Config/Delivery/storage`` is then not used):
  /// the seam for stores other than the two built in, such as a database several hubs share.
  ///
  /// - Parameters: As ``init(config:logger:handler:)``, and `store`, where the outbox and the
  ///   de-duplication window live.
  package init(
    config: Config,
    store: any DeliveryStore,
    logger: Logger = Logger(label: "peer-agent"),
    handler: @escaping Handler
  ) throws {
    if let listen = config.listen, !(listen.isIPv4 || listen.isIPv6 || listen.host == "localhost") {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "listen address '\(listen)' must be an IP address (e.g. 127.0.0.1:7000 or [::1]:7000)"
      )
    }
    self.config = config
    let material: TLSMaterial?
    switch config.security.wrapped {
    case .plaintext: material = nil
    case .mutualTLS(let tls): material = try TLSMaterial(tls, check: StartupChecks(config: config, tls: tls).check)
    }
    self.name = config.name ?? material?.current.ownIdentity ?? "peer"
    var logger = logger
    logger[metadataKey: "peer"] = "\(self.name)"
    self.context = LinkContext(name: self.name, config: config, logger: logger, material: material, store: store, handler: handler)
    do {
      self.recoveredDeliveries = try self.context.outbox.recover()
    } catch {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "cannot read the unanswered requests from the state store: \(error)",
        cause: error
      )
    }
    if !self.recoveredDeliveries.isEmpty {
      logger.notice(
        "resuming unanswered requests from the previous run",
        metadata: ["count": "\(self.recoveredDeliveries.count)"]
      )
    }
  }

  /// Re-reads the TLS files — certificate, key, CA, revocation list, allowlist — and uses them
  /// from the next handshake on. Links stay up, except those whose certificate no longer
  /// verifies with the new files (revoked, its CA removed) or whose peer the allowlist no
  /// longer lists: they are ended. `peer-agent run` calls it on SIGHUP, and the peer itself when
  /// one of the files changes.
  ///
  /// - Throws: ``PeerAgentError`` saying what is wrong with the new files; the old material
  ///   stays in use.
  public func reloadSecurity() async throws {
    try await SecurityReload(context: self.context).reload(reason: "requested")
  }

  /// What happens to the listener and the links. Buffers the newest 1,024 events.
  public var events: AsyncStream<PeerEvent> { self.context.events.stream }

  /// Runs the listener and the dialers until ``beginGracefulShutdown()`` or cancellation.
  ///
  /// A graceful shutdown stops new requests, lets requests in flight (sent and being handled)
  /// finish for ``Config/Shutdown/gracePeriod``, fails what is left with `shuttingDown`, then
  /// closes every stream and connection. Cancellation skips the grace period.
  ///
  /// - Throws: ``PeerAgentError`` (`alreadyRunning`), or the listener's error if it cannot bind.
  public func run() async throws {
    try self.lifecycle.start()
    defer {
      self.lifecycle.finish()
      self.context.events.finish()
    }
    try await withGracefulShutdownHandler {
      try await Supervisor(context: self.context, lifecycle: self.lifecycle).run()
    } onGracefulShutdown: {
      self.beginGracefulShutdown()
    }
  }

  /// Starts a graceful shutdown; ``run()`` returns once it is done. Synchronous and safe to call
  /// more than once.
  public func beginGracefulShutdown() {
    self.lifecycle.send(.shutdown)
  }

  /// Adds a dialer to `target` while the peer runs (for peers whose remote address is known
  /// only after start, such as two peers on ports chosen by the system).
  public func dial(_ target: Target) {
    self.lifecycle.send(.dial(target))
  }

  /// An executor this peer's streams run on, with ``Config/Transport/Execution/eventLoop``
  /// (the default): the event loop of its first dialer's connection, else of the connection
  /// it accepted last; `nil` with `concurrencyPool`.
  ///
  /// A caller for which latency matters, sending over that link, can run there too and save
  /// a thread hop each way: `withTaskExecutorPreference(peer.taskExecutor) { try await
  /// peer.send(…) }`. Keep what runs there short: it shares the thread with the other
  /// connections on that loop.
  public var taskExecutor: (any TaskExecutor)? {
    guard let loops = self.context.loops else { return nil }
    return self.context.dialerLoops.withLock { $0.first }
      ?? self.context.connectionLoops?.latestExecutor
      ?? loops.executors[0]
  }

  /// The executor of the link requests to `remote` are written on now: its connection's event
  /// loop, with ``Config/Transport/Execution/eventLoop``; else ``taskExecutor``.
  ///
  /// A caller that sends to many remotes over many loops (a hub fanning out) runs each
  /// remote's requests there, and the loops share the work without waking each other:
  /// `withTaskExecutorPreference(peer.taskExecutor(for: name)) { try await peer.send(…, to: name) }`.
  public func taskExecutor(for remote: String) -> (any TaskExecutor)? {
    self.context.table.executor(for: remote) ?? self.taskExecutor
  }

  /// The remote peers that can be sent to now, sorted by name.
  public var connectedPeers: [PeerIdentity] { self.context.table.connected }

  /// The state of the link to each remote peer this peer has heard of, by name.
  public var linkStates: [String: LinkState] { self.context.table.states }

  /// Who this peer is, its links by remote, and what it owes them, now.
  public var status: PeerStatus {
    let outbox = self.context.outbox
    return PeerStatus(
      peer: self.name,
      mode: self.config.mode.rawValue,
      listening: self.lifecycle.listeningAddress.currentValue.map { "\($0)" },
      links: self.context.table.snapshot.map { remote in
        PeerStatus.Link(
          peer: remote.name,
          state: remote.state.rawValue,
          kind: remote.kind?.rawValue,
          unanswered: outbox.count(for: remote.name)
        )
      },
      outboxDepth: outbox.count(),
      handling: self.context.inbox.inFlight,
      cluster: self.context.cluster?.status
    )
  }

  /// Counters of the delivery machinery since the peer started.
  public var deliveryStatistics: DeliveryStatistics {
    DeliveryStatistics(
      unanswered: self.context.outbox.count(),
      resent: self.context.outbox.resends,
      repeatsAnswered: self.context.inbox.repeats,
      misdirectedReplies: self.context.outbox.misdirected
    )
  }

  /// The address the listener is bound to, once it is (waits for it).
  ///
  /// - Throws: ``PeerAgentError`` (`notRunning`) if the peer has no listener or stopped first.
  public var listeningAddress: PeerAddress {
    get async throws {
      guard self.config.listen != nil else {
        throw PeerAgentError(code: .notRunning, message: "this peer does not listen")
      }
      return try await self.lifecycle.listeningAddress.wait()
    }
  }

  /// Sends `text` to a remote peer and waits for its reply.
  ///
  /// Works the same from either side and in either mode. The request is kept until its reply
  /// arrives: when the peer is not connected yet, or the link drops, it waits and is written
  /// again on the next link, within the same deadline; the receiver answers a repeat from its
  /// window without calling its handler again.
  ///
  /// - Parameters:
  ///   - text: The request.
  ///   - name: The remote peer's identity; `nil` when exactly one peer is (or will be) connected.
  ///   - timeout: The request's time to live; ``Config/Requests/timeout`` if `nil`.
  /// - Returns: The reply, who sent it, and the round-trip time.
  /// - Throws: ``PeerAgentError``: `timedOut`, `notConnected`, `unknownPeer`, `ambiguousPeer`,
  ///   `remoteHandlerFailed`, `storageFailed` or `shuttingDown`.
  public func send(_ text: String, to name: String? = nil, timeout: Duration? = nil) async throws -> Reply {
    try await self.submit(text, to: name, timeout: timeout).reply()
  }

  /// Accepts a request for a remote peer and returns as soon as it is in the outbox (on disk,
  /// with a durable store), without waiting for the reply.
  ///
  /// Waits while the remote's window of unanswered requests
  /// (``Config/Delivery/maximumInFlight``) is full: this is the backpressure that keeps memory
  /// bounded.
  ///
  /// - Parameters: As ``send(_:to:timeout:)``.
  /// - Returns: The delivery; ``Delivery/reply()`` waits for its reply.
  /// - Throws: ``PeerAgentError``: `timedOut` (no room in the window before the deadline),
  ///   `notConnected`, `ambiguousPeer`, `messageTooLarge`, `storageFailed` or `shuttingDown`.
  public func submit(_ text: String, to name: String? = nil, timeout: Duration? = nil) async throws -> Delivery {
    try await self.enqueue(text, to: name, timeout: timeout).recorded()
  }

  /// Accepts a request for a remote peer without waiting for the store: returns once there is
  /// room in the remote's window and the request is being recorded, after every request
  /// accepted before it. ``PendingDelivery/recorded()`` then waits until it is in the outbox
  /// (on disk, with a durable store).
  ///
  /// A caller with many requests — a script's lines — accepts them in a row and takes each
  /// delivery in turn: a durable store then records them together, one disk write for many,
  /// and they are sent in the order they were accepted.
  ///
  /// - Parameters: As ``send(_:to:timeout:)``.
  /// - Throws: As ``submit(_:to:timeout:)``, except `storageFailed`, which
  ///   ``PendingDelivery/recorded()`` throws.
  public func enqueue(_ text: String, to name: String? = nil, timeout: Duration? = nil) async throws -> PendingDelivery {
    guard self.lifecycle.acceptsRequests else {
      throw PeerAgentError(code: .shuttingDown, message: "the peer is shutting down: no new requests")
    }
    let id = self.requestIDs.next()
    let size = WireSize.request(id: id, text: text)
    let limit = self.config.transport.maximumMessageBytes
    if size > limit {
      throw PeerAgentError.messageTooLarge(bytes: size, limit: limit, whose: "this peer sends")
    }
    let deadline = ContinuousClock.now.advanced(by: timeout ?? self.config.requests.timeout)
    let peer: String
    if let name {
      peer = name
    } else if !self.context.table.hasConnections, self.config.connect.count == 1 {
      // Not connected yet: queued for the one peer this peer dials, delivered once it is.
      peer = self.config.connect[0].queueName
    } else {
      peer = try await self.context.table.onlyPeer(deadline: deadline).name
    }
    let trace = self.context.tracing?.startSend(id: id, to: peer)
    let table = self.context.table
    do {
      let accepted = try await self.context.outbox.enqueue(
        id: id, to: peer, text: text, deadline: deadline, trace: trace, recorded: { table.write($0) }
      )
      return PendingDelivery(accepted: accepted, trace: trace)
    } catch {
      trace?.end(failure: (error as? PeerAgentError).map { "\($0.code)" } ?? "\(error)")
      throw error
    }
  }
}

/// A request accepted by ``Peer/enqueue(_:to:timeout:)`` and being recorded.
public struct PendingDelivery: Sendable {
  let accepted: Promise<Outbox.Accepted>
  let trace: OutgoingTrace?

  /// The delivery, if the request is in the outbox already (at once, with a store in memory).
  public var delivery: Delivery? { self.accepted.currentValue?.delivery }

  /// Waits until the request is in the outbox (on disk, with a durable store).
  ///
  /// - Returns: The delivery; ``Delivery/reply()`` waits for its reply.
  /// - Throws: ``PeerAgentError``: `storageFailed` or `shuttingDown`; or `CancellationError`
  ///   (the request is still delivered).
  public func recorded() async throws -> Delivery {
    do {
      return try await self.accepted.wait().delivery
    } catch let error as PeerAgentError {
      self.trace?.end(failure: "\(error.code)")
      throw error
    }
  }
}

extension Peer: Service {}

extension Peer {
  /// Request ids: 128 bits from the system's secure random source, as 32 hex digits — unique
  /// across runs and peers, and unpredictable, so that no one who sees some ids can name
  /// another request's. Receivers de-duplicate by them; on the wire they are opaque strings.
  fileprivate struct RequestIDs: Sendable {
    /// A new id.
    func next() -> String {
      var random = SystemRandomNumberGenerator()
      return Self.hex(random.next()) + Self.hex(random.next())
    }

    private static func hex(_ value: UInt64) -> String {
      let digits = String(value, radix: 16)
      return String(repeating: "0", count: 16 - digits.count) + digits
    }
  }
}
