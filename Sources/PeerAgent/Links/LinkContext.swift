internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging
internal import X509

/// What the link layer — the service, the dialers and their sessions, the streams — needs of
/// its peer, and nothing more: the link table, the outbox, the inbox (with the handler), the
/// events, the logger, the configuration and the TLS material.
struct LinkContext: Sendable {
  /// The peer's configuration.
  let config: Peer.Config
  /// The peer's logger (with `peer` in its metadata).
  let logger: Logger
  /// Which links exist and where each remote's requests are written.
  let table: LinkTable
  /// This peer's unanswered requests.
  let outbox: Outbox
  /// Every request received, handled exactly once.
  let inbox: Inbox
  /// Where events are published.
  let events: EventHub
  /// The event loops connections and their streams run on, or `nil` for the concurrency pool.
  let loops: EventLoops?
  /// Which loop each accepted connection runs on (with ``loops``).
  let connectionLoops: ConnectionLoops?
  /// The loops of this peer's dialers, in the order they were made.
  let dialerLoops = LockedBox<[EventLoopExecutor]>([])
  /// The TLS material, or `nil` in plaintext.
  let material: TLSMaterial?
  /// Why the listener's TLS handshakes failed, until the connection reports it.
  let verificationFailures = VerificationFailures()
  /// Set when the peer starts to shut down: dialers start no new session from then on.
  let draining = Signal()
  /// Set when the peer, shutting down, closes its links (after the grace period): streams
  /// the remotes opened end, with the goodbye (``LinkEnding/Goodbye``).
  let closing = Signal()
  /// The application heartbeat, unless disabled.
  let heartbeat: Heartbeat?
  /// What this peer announces in the metadata of every long-lived stream.
  let announcement: Metadata
  /// The key each connected remote identity presented: one name, one key.
  let keys = IdentityKeys()
  /// The cluster's registry of names and keys, when this peer is a hub of one.
  let sharedKeys = LockedBox<(any SharedKeyRegistry)?>(nil)
  /// Every accepted connection with a verified chain, idle or not, for a reload to check.
  let verifiedConnections = VerifiedConnections()
  /// This peer's own name (``Peer/name``), for messages to remotes.
  let ownName: String
  /// The remotes a mode mismatch was reported for.
  let mismatches = LockedBox<Set<String>>([])
  /// Where metrics are recorded, or `nil` when no backend takes them.
  let metrics: PeerMetrics?
  /// Where spans go, or `nil` when tracing is off.
  let tracing: PeerTracing?
  /// What this hub does through the cluster database; `nil` for a peer on its own.
  let cluster: ClusterActivity?

  init(
    name: String,
    config: Peer.Config,
    logger: Logger,
    material: TLSMaterial?,
    store: any DeliveryStore,
    handler: @escaping Peer.Handler
  ) {
    self.ownName = name
    self.config = config
    self.logger = logger
    self.material = material
    switch config.transport.execution.wrapped {
    case .eventLoop:
      let loops = EventLoops.shared(loops: config.transport.eventLoops)
      self.loops = loops
      self.connectionLoops = ConnectionLoops(loops: loops)
    case .concurrencyPool:
      self.loops = nil
      self.connectionLoops = nil
    }
    self.events = EventHub()
    let metrics = PeerMetrics.make(config.observability)
    self.metrics = metrics
    self.tracing = PeerTracing.make(config.observability)
    self.cluster = config.cluster.map { ClusterActivity(database: "\($0.database)", metrics: metrics) }
    let store: any DeliveryStore = metrics.map { TimedDeliveryStore(store: store, metrics: $0) } ?? store
    self.outbox = Outbox(
      store: store,
      metrics: metrics,
      window: config.delivery.maximumInFlight,
      maximumMessageBytes: config.transport.maximumMessageBytes
    )
    self.inbox = Inbox(
      store: store,
      handling: config.delivery.handling,
      retention: config.delivery.replyRetention,
      bounds: config.delivery.windowBounds,
      metrics: metrics,
      tracing: self.tracing,
      logger: logger,
      handler: handler
    )
    self.table = LinkTable(outbox: self.outbox, events: self.events, logger: logger)
    self.heartbeat = Heartbeat(config.health)
    self.announcement = Announcement.metadata(
      heartbeat: self.heartbeat,
      maximumMessageBytes: config.transport.maximumMessageBytes,
      mode: config.mode
    )
  }

  /// The executor a listener's stream runs on: its connection's loop (`nil`: the pool).
  func executor(for context: ServerContext) -> EventLoopExecutor? {
    self.connectionLoops?.executor(forRemote: context.remotePeer)
  }

  /// Reports, once per remote, that `remote` announced another mode than this peer's, with
  /// the fix: each side then sees only half of a link.
  func checkMode(of remote: PeerIdentity, announced: Announcement) {
    guard let theirs = announced.mode, theirs != self.config.mode,
      self.mismatches.withLock({ reported in
        // Bounded: plaintext remotes are named by address, new with every connection.
        if reported.count >= 1024 { reported.removeAll() }
        return reported.insert(remote.name).inserted
      })
    else { return }
    let ours = self.config.mode
    let message =
      "'\(remote.name.logSafe)' runs --mode \(theirs) and this peer --mode \(ours): requests may go one way only, or wait for a link that never comes. Start both with the same --mode."
    self.logger.forLink(remote).warning("mode mismatch", metadata: ["reason": "\(message)", "event": "mismatch"])
    self.events.emit(.modeMismatch(peer: remote.name.logSafe, theirs: theirs, ours: ours, message: message))
  }

  /// The remote end of a server-side RPC: its verified certificate's identity and key, or in
  /// plaintext its address.
  ///
  /// Every stream is checked against the material that is current, not the material of its
  /// connection's handshake: a certificate revoked, expired or taken off the allowlist since
  /// opens no stream, even on a connection that was idle when the reload came.
  ///
  /// - Throws: `RPCError`: `unauthenticated` when the connection's chain was not verified in
  ///   this handshake (a resumed TLS session is never trusted on its ticket), and
  ///   `permissionDenied` when the current material refuses the chain, or its name is
  ///   connected with another key.
  func authenticate(_ context: ServerContext) async throws -> RemotePeer {
    guard let material = self.material else {
      return RemotePeer(identity: .unverified(address: Self.address(fromPeer: context.remotePeer)), key: nil)
    }
    guard let transport = context.transportSpecific as? HTTP2ServerTransport.Posix.Context,
      let chain = transport.peerCertificateChain,
      let name = CertificateNames.identity(of: chain.leaf)
    else {
      throw RPCError(code: .unauthenticated, message: "no client certificate verified in this TLS handshake")
    }
    let key = KeyFingerprint(of: chain.leaf)
    let certificates = Array(chain)
    if let refusal = await material.current.refusal(ofVerified: certificates, key: key, presentedBy: .dialer) {
      let logger = self.logger.forLink(.verified(name))
      logger.warning("refused a stream: not authorized", metadata: ["reason": "\(refusal)", "key": "\(key)", "event": "refused"])
      self.metrics?.refused(refusal.metric)
      self.events.emit(.refused(remote: name.logSafe, reason: refusal.description))
      throw RPCError(code: .permissionDenied, message: "'\(self.ownName.logSafe)' refused this peer: \(refusal)")
    }
    do {
      try self.keys.check(name, key: key)
    } catch {
      self.refusedKey(error)
      throw error.rpcError
    }
    try await self.checkSharedKey(of: name, key: key)
    return RemotePeer(identity: .verified(name), key: key, chain: certificates, presentedBy: .dialer)
  }

  /// Refuses `name` with `key` when the cluster binds the name to another key (another hub
  /// holds its lease). A registry that cannot be read does not refuse: the lease write that
  /// follows the connection refuses to take over another key's lease, and ends the link.
  private func checkSharedKey(of name: String, key: KeyFingerprint) async throws {
    guard let registry = self.sharedKeys.current else { return }
    let bound: String?
    do {
      bound = try await registry.boundKey(of: name)
    } catch {
      self.logger.debug("cannot read the cluster's key for a name", metadata: ["name": "\(name.logSafe)", "error": "\(error)"])
      return
    }
    guard let bound, bound != key.description else { return }
    let conflict = SharedKeyConflict(name: name, bound: bound, presented: key.description)
    self.report(conflict, "refused a connection: its name is connected to another hub of the cluster with another key")
    throw RPCError(code: .permissionDenied, message: conflict.description)
  }

  /// Counts, logs and publishes a name the cluster binds to another key.
  func report(_ conflict: SharedKeyConflict, _ message: Logger.Message) {
    self.metrics?.refused(.keyConflict)
    self.logger.forLink(.verified(conflict.name)).warning(
      message,
      metadata: ["connected.key": "\(conflict.bound)", "presented.key": "\(conflict.presented)", "event": "refused"]
    )
    self.events.emit(.refused(remote: conflict.name.logSafe, reason: conflict.description))
  }

  /// Logs and publishes a connection refused because its name is connected with another key.
  func refusedKey(_ conflict: IdentityKeys.Conflict) {
    self.metrics?.refused(.keyConflict)
    // Once a minute per name and key: a refused peer redials, and each session opens
    // several streams.
    guard self.keys.shouldReport(conflict) else { return }
    self.logger.forLink(.verified(conflict.name)).warning(
      "refused a connection: its name is connected with another key",
      metadata: ["connected.key": "\(conflict.connected)", "presented.key": "\(conflict.presented)", "event": "refused"]
    )
    self.events.emit(.refused(remote: conflict.name.logSafe, reason: conflict.description))
  }

  /// Runs a server-side RPC's body with `remote`'s key recorded (``IdentityKeys``).
  func serving(_ remote: RemotePeer, _ body: @escaping @Sendable () async throws -> Void) async throws {
    do {
      try await self.keys.holding(remote, body)
    } catch let conflict as IdentityKeys.Conflict {
      self.refusedKey(conflict)
      throw conflict.rpcError
    } catch let ended as LiveConnection.Ended {
      throw RPCError(code: .permissionDenied, message: "'\(self.ownName.logSafe)' ended this link: \(ended)")
    }
  }

  /// `ipv4:127.0.0.1:5000` → `127.0.0.1:5000`; `ipv6:[::1]:5000` → `[::1]:5000`.
  static func address(fromPeer peer: String) -> String {
    for prefix in ["ipv4:", "ipv6:", "unix:"] where peer.hasPrefix(prefix) {
      return String(peer.dropFirst(prefix.count))
    }
    return peer
  }
}

/// A name the cluster binds to another key than the one presented.
struct SharedKeyConflict: Error, CustomStringConvertible {
  var name: String
  var bound: String
  var presented: String

  var description: String {
    "peer '\(self.name.logSafe)' is connected to the cluster with key \(self.bound); this connection presented \(self.presented) (one name, one key: refused)"
  }
}
