internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging

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
  /// The event loop streams run on, or `nil` for the concurrency pool.
  let executor: EventLoopExecutor?
  /// The TLS material, or `nil` in plaintext.
  let material: TLSMaterial?
  /// Why the listener's TLS handshakes failed, until the connection reports it.
  let verificationFailures = VerificationFailures()
  /// Set when the peer starts to shut down: dialers start no new session from then on.
  let draining = Signal()
  /// The application heartbeat, unless disabled.
  let heartbeat: Heartbeat?
  /// What this peer announces in the metadata of every long-lived stream.
  let announcement: Metadata

  init(
    config: Peer.Config,
    logger: Logger,
    material: TLSMaterial?,
    store: any DeliveryStore,
    handler: @escaping Peer.Handler
  ) {
    self.config = config
    self.logger = logger
    self.material = material
    switch config.transport.execution.wrapped {
    case .eventLoop: self.executor = .shared
    case .concurrencyPool: self.executor = nil
    }
    self.events = EventHub()
    self.outbox = Outbox(
      store: store,
      window: config.delivery.maximumInFlight,
      maximumMessageBytes: config.transport.maximumMessageBytes
    )
    self.inbox = Inbox(
      store: store,
      handling: config.delivery.handling,
      retention: config.delivery.replyRetention,
      capacity: config.delivery.replyCapacity,
      logger: logger,
      handler: handler
    )
    self.table = LinkTable(outbox: self.outbox, events: self.events, logger: logger)
    self.heartbeat = Heartbeat(config.health)
    self.announcement = Announcement.metadata(
      heartbeat: self.heartbeat,
      maximumMessageBytes: config.transport.maximumMessageBytes
    )
  }

  /// The identity of the remote end of a server-side RPC: its verified certificate's name, or
  /// in plaintext its address.
  func identity(of context: ServerContext) throws -> PeerIdentity {
    guard self.material != nil else {
      return .unverified(address: Self.address(fromPeer: context.remotePeer))
    }
    guard let transport = context.transportSpecific as? HTTP2ServerTransport.Posix.Context,
      let certificate = transport.peerCertificate,
      let name = CertificateVerifier.identityName(of: certificate)
    else {
      throw RPCError(code: .unauthenticated, message: "no verified client certificate")
    }
    return .verified(name)
  }

  /// `ipv4:127.0.0.1:5000` → `127.0.0.1:5000`; `ipv6:[::1]:5000` → `[::1]:5000`.
  static func address(fromPeer peer: String) -> String {
    for prefix in ["ipv4:", "ipv6:", "unix:"] where peer.hasPrefix(prefix) {
      return String(peer.dropFirst(prefix.count))
    }
    return peer
  }
}
