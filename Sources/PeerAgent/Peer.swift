public import Logging
public import ServiceLifecycle
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import NIOCore
internal import NIOSSL
internal import X509
private import Synchronization
#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

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
  /// What happens to the listener and the links. Buffers the newest 1,024 events.
  public let events: AsyncStream<PeerEvent>

  let logger: Logger
  let handler: Handler
  let material: TLSMaterial?
  let registry = LinkRegistry()
  let verificationFailures = VerificationFailures()
  /// This peer's unanswered requests, per remote peer.
  let outbox: Outbox
  /// Exactly-once handling of incoming requests.
  let inbox: Inbox
  /// Set when the peer starts to shut down: dialers start no new session from then on.
  let draining = Signal()
  /// The event loop that runs this peer's connections and streams, with
  /// ``Config/Transport/Execution/eventLoop``; `nil` runs them on the concurrency pool.
  let streamExecutor: EventLoopExecutor?

  /// The requests a previous run on the same durable store left unanswered, loaded when the
  /// peer was created. They are sent again once their remotes connect; wait for their replies
  /// with ``Delivery/reply()``. Empty with an in-memory store.
  public let recoveredDeliveries: [Delivery]

  private let eventContinuation: AsyncStream<PeerEvent>.Continuation
  private let control: AsyncStream<Control>
  private let controlContinuation: AsyncStream<Control>.Continuation
  private let state = Mutex(State())
  private let requestIDs = RequestIDGenerator()
  /// Requests this peer is handling.
  private let handling = Atomic<Int>(0)
  private let links = Mutex<[String: LinkState]>([:])

  private enum Control: Sendable {
    case dial(Target)
    case shutdown
    case failed
  }

  private enum Lifecycle {
    case idle
    case running
    case draining
    case finished
  }

  private struct State {
    var lifecycle = Lifecycle.idle
    var listeningAddress: PeerAddress?
    var addressWaiters: [CheckedContinuation<PeerAddress, any Error>] = []
  }

  /// Creates a peer, reading and checking its TLS material now, so that bad files fail here
  /// with a clear message rather than at the first handshake.
  ///
  /// - Parameters:
  ///   - config: Mode, addresses, security and timings.
  ///   - logger: Where the peer logs; every line carries `peer` (this peer) and, about a link,
  ///     `link` (the remote identity).
  ///   - handler: Answers every request from every remote peer.
  /// - Throws: ``PeerAgentError`` with `invalidConfiguration` or `invalidCertificate`.
  public init(
    config: Config,
    logger: Logger = Logger(label: "peer-agent"),
    handler: @escaping Handler
  ) throws {
    self.config = config
    self.handler = handler
    switch config.security.wrapped {
    case .plaintext:
      self.material = nil
    case .mutualTLS(let tls):
      self.material = try TLSMaterial(tls)
    }
    self.name = config.name ?? self.material?.ownIdentity ?? "peer"
    switch config.transport.execution.wrapped {
    case .eventLoop: self.streamExecutor = .shared
    case .concurrencyPool: self.streamExecutor = nil
    }
    var logger = logger
    logger[metadataKey: "peer"] = "\(self.name)"
    self.logger = logger

    let store: any DeliveryStore
    switch config.delivery.storage.wrapped {
    case .inMemory:
      store = InMemoryDeliveryStore(capacity: config.delivery.replyCapacity)
    case .sqlite(let directory):
      store = try SQLiteDeliveryStore(directory: directory)
    }
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
      logger: logger
    )
    do {
      self.recoveredDeliveries = try self.outbox.recover()
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
    if let problem = self.material?.ownCertificateProblem {
      logger.warning(
        "this peer's own certificate will be refused by peers that trust the same CA",
        metadata: ["reason": "\(problem)"]
      )
    }
    (self.events, self.eventContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1024))
    (self.control, self.controlContinuation) = AsyncStream.makeStream()
    if let listen = config.listen, !(listen.isIPv4 || listen.isIPv6 || listen.host == "localhost") {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "listen address '\(listen)' must be an IP address (e.g. 127.0.0.1:7000 or [::1]:7000)"
      )
    }
  }

  /// Runs the listener and the dialers until ``beginGracefulShutdown()`` or cancellation.
  ///
  /// A graceful shutdown stops new requests, lets requests in flight (sent and being handled)
  /// finish for ``Config/Shutdown/gracePeriod``, fails what is left with `shuttingDown`, then
  /// closes every stream and connection. Cancellation skips the grace period.
  ///
  /// - Throws: ``PeerAgentError`` (`alreadyRunning`), or the listener's error if it cannot bind.
  public func run() async throws {
    try self.state.withLock { state in
      guard case .idle = state.lifecycle else {
        throw PeerAgentError(code: .alreadyRunning, message: "a peer runs once")
      }
      state.lifecycle = .running
    }
    defer { self.finish() }
    try await withGracefulShutdownHandler {
      try await self.runLinks()
    } onGracefulShutdown: {
      self.beginGracefulShutdown()
    }
  }

  private func runLinks() async throws {
    let failure = LockedBox<(any Error)?>(nil)
    let serverStopped = LockedBox(false)
    try await withThrowingDiscardingTaskGroup { group in
      var server: GRPCServer<HTTP2ServerTransport.Posix>?
      if let listen = self.config.listen {
        let transport = self.makeServerTransport(address: listen)
        let grpcServer = GRPCServer(transport: transport, services: [ContactService(peer: self)])
        server = grpcServer
        group.addTask {
          defer { serverStopped.withLock { $0 = true } }
          do {
            try await grpcServer.serve()
          } catch {
            self.fail(with: error, into: failure)
          }
        }
        group.addTask {
          do {
            let bound = try await transport.listeningAddress
            let address = PeerAddress(bound) ?? listen
            self.listening(at: address)
          } catch {
            self.fail(with: error, into: failure)
          }
        }
      }
      for target in self.config.connect {
        group.addTask { await Dialer(peer: self, target: target).run() }
      }
      group.addTask { await self.sweepDeadlines() }

      var graceful = false
      for await command in self.control {
        switch command {
        case .dial(let target):
          group.addTask { await Dialer(peer: self, target: target).run() }
          continue
        case .shutdown:
          graceful = true
        case .failed:
          graceful = false
        }
        break
      }

      self.state.withLock { $0.lifecycle = .draining }
      self.draining.set()
      if graceful { await self.drain() }
      let shuttingDown = PeerAgentError(
        code: .shuttingDown,
        message: self.outbox.store.isDurable
          ? "the peer shut down before the reply came; the request stays in the state store for the next run"
          : "the peer shut down before the reply came"
      )
      self.outbox.close(with: shuttingDown)
      for route in self.registry.close(with: shuttingDown) {
        route.finishOutgoing()
        self.outbox.detach(route)
        self.setLinkState(.down, of: route.identity.name, reason: "shutdown")
        self.emit(.disconnected(peer: route.identity, link: route.kind, reason: "shutdown"))
      }
      server?.beginGracefulShutdown()
      if graceful, server != nil {
        // Let streams the remotes are closing finish (a last reply, a half-close) before
        // cancelling what is left.
        let deadline = ContinuousClock.now.advanced(by: .seconds(1))
        while !serverStopped.current, ContinuousClock.now < deadline {
          try? await Task.sleep(for: .milliseconds(10))
        }
      }
      group.cancelAll()
    }
    if let error = failure.current {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "cannot listen on \(self.config.listen.map { "\($0)" } ?? "?"): \(Self.rootCause(error))",
        cause: error
      )
    }
  }

  /// Starts a graceful shutdown; ``run()`` returns once it is done. Synchronous and safe to call
  /// more than once.
  public func beginGracefulShutdown() {
    self.controlContinuation.yield(.shutdown)
  }

  /// Adds a dialer to `target` while the peer runs (for peers whose remote address is known
  /// only after start, such as two peers on ports chosen by the system).
  public func dial(_ target: Target) {
    self.controlContinuation.yield(.dial(target))
  }

  /// The executor this peer's streams run on: the event loop of its connections, with
  /// ``Config/Transport/Execution/eventLoop`` (the default); `nil` with `concurrencyPool`.
  ///
  /// A caller for which latency matters can run there too and save a thread hop each way:
  /// `withTaskExecutorPreference(peer.taskExecutor) { try await peer.send(…) }`. Keep what runs
  /// there short: it shares the thread with every link of the peer.
  public var taskExecutor: (any TaskExecutor)? { self.streamExecutor }

  /// The remote peers that can be sent to now, sorted by name.
  public var connectedPeers: [PeerIdentity] { self.registry.connected }

  /// The address the listener is bound to, once it is (waits for it).
  ///
  /// - Throws: ``PeerAgentError`` (`notRunning`) if the peer has no listener or stopped first.
  public var listeningAddress: PeerAddress {
    get async throws {
      guard self.config.listen != nil else {
        throw PeerAgentError(code: .notRunning, message: "this peer does not listen")
      }
      return try await withCheckedThrowingContinuation { continuation in
        let result: Result<PeerAddress, any Error>? = self.state.withLock { state in
          if let address = state.listeningAddress { return .success(address) }
          if case .finished = state.lifecycle {
            return .failure(PeerAgentError(code: .notRunning, message: "the peer is not running"))
          }
          state.addressWaiters.append(continuation)
          return nil
        }
        if let result { continuation.resume(with: result) }
      }
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
  ///   `notConnected`, `ambiguousPeer`, `storageFailed` or `shuttingDown`.
  public func submit(_ text: String, to name: String? = nil, timeout: Duration? = nil) async throws -> Delivery {
    let refusal: PeerAgentError? = self.state.withLock { state in
      switch state.lifecycle {
      case .idle, .running: return nil
      case .draining, .finished:
        return PeerAgentError(code: .shuttingDown, message: "the peer is shutting down: no new requests")
      }
    }
    if let refusal { throw refusal }

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
    } else if self.registry.connected.isEmpty, self.config.connect.count == 1 {
      // Not connected yet: queued for the one peer this peer dials, delivered once it is.
      peer = self.config.connect[0].queueName
    } else {
      peer = try await self.registry.onlyPeer(deadline: deadline).name
    }
    return try await self.outbox.submit(id: id, to: peer, text: text, deadline: deadline)
  }

  /// What this peer announces in the metadata of every long-lived stream: its heartbeat
  /// interval (if it heartbeats) and the largest message it accepts.
  var announcement: Metadata {
    var metadata = Metadata()
    if let heartbeat = self.heartbeat {
      metadata.addString("\(heartbeat.interval.milliseconds)", forKey: heartbeatMetadataKey)
    }
    metadata.addString("\(self.config.transport.maximumMessageBytes)", forKey: maximumMessageBytesMetadataKey)
    return metadata
  }

  /// The application heartbeat, unless disabled.
  var heartbeat: Heartbeat? {
    self.config.health.heartbeatInterval.map { Heartbeat(interval: $0, timeout: self.config.health.heartbeatTimeout) }
  }

  /// The state of the link to each remote peer this peer has heard of, by name.
  public var linkStates: [String: LinkState] { self.links.withLock { $0 } }

  /// Counters of the delivery machinery since the peer started.
  public var deliveryStatistics: DeliveryStatistics {
    DeliveryStatistics(
      unanswered: self.outbox.count(),
      resent: self.outbox.resends,
      repeatsAnswered: self.inbox.repeats
    )
  }

  // MARK: - Internal, for the links

  /// Handles one incoming request exactly once: a repeat of an id already handled gets the
  /// reply already given.
  ///
  /// The request counts as in flight (a graceful shutdown waits for it) until `reply` has
  /// taken the reply.
  func handle(_ request: IncomingRequest, reply: (ReplyBody) -> Void) async {
    self.handling.add(1, ordering: .relaxed)
    defer { self.handling.subtract(1, ordering: .relaxed) }
    reply(await self.inbox.handle(request) { request in await self.callHandler(request) })
  }

  private func callHandler(_ request: IncomingRequest) async -> ReplyBody {
    do {
      let text = try await self.handler(request)
      return ReplyBody(id: request.id, text: text, error: nil)
    } catch {
      var logger = self.logger
      logger[metadataKey: "link"] = "\(request.from)"
      if error is CancellationError || Task.isCancelled {
        logger.debug("handler cancelled: its stream went away", metadata: ["id": "\(request.id)"])
        return ReplyBody(id: request.id, text: "", error: "cancelled", wasCancelled: true)
      }
      logger.warning("handler failed", metadata: ["id": "\(request.id)", "error": "\(error)"])
      return ReplyBody(id: request.id, text: "", error: "\(error)")
    }
  }

  /// Makes `route` the way to its peer, writes on it what the peer is owed, and says so.
  ///
  /// - Parameter placeholder: For a dialer's route, the name requests were queued under before
  ///   the remote's name was known (``Target/queueName``); they move to the remote's name.
  func attach(_ route: OutboundRoute, placeholder: String? = nil) {
    let (replaced, accepted) = self.registry.add(route)
    guard accepted else {
      route.finishOutgoing()
      return
    }
    replaced?.finishOutgoing()
    if let placeholder { self.outbox.rename(placeholder, to: route.identity.name) }
    self.outbox.attach(route)
    self.logger(for: route.identity).info(
      "connected",
      metadata: ["link.kind": "\(route.kind)", "unanswered": "\(self.outbox.count(for: route.identity.name))"]
    )
    self.emit(.connected(peer: route.identity, link: route.kind))
    self.setLinkState(.ready, of: route.identity.name, reason: nil)
  }

  /// Ends `route`. Its unanswered requests stay in the outbox for the next route to the peer.
  func detach(_ route: OutboundRoute, reason: String) {
    route.finishOutgoing()
    self.outbox.detach(route)
    guard self.registry.remove(route) else { return }
    self.logger(for: route.identity).info(
      "disconnected",
      metadata: ["link.kind": "\(route.kind)", "reason": "\(reason)"]
    )
    self.emit(.disconnected(peer: route.identity, link: route.kind, reason: reason))
    self.setLinkState(.down, of: route.identity.name, reason: reason)
  }

  /// Delivers a reply that came on `route` (or, for `getTask` routes, on the dialer's
  /// `tellResult`) to its request: by id, or — without one — to the oldest request written on
  /// the route.
  func deliver(_ reply: ReplyBody, from identity: PeerIdentity, on route: OutboundRoute?) {
    var reply = reply
    if reply.id.isEmpty {
      guard let id = route?.oldestWritten(where: { self.outbox.isWaiting(id: $0) }) else {
        self.logger(for: identity).notice("a reply without an id matched no waiting request")
        return
      }
      reply.id = id
    }
    if !self.outbox.resolve(reply, from: identity) {
      // A repeat: the request was resent after a reconnect, and both copies were answered.
      self.logger(for: identity).debug("a reply matched no waiting request", metadata: ["id": "\(reply.id)"])
    }
  }

  /// Records and reports a link's new state, if it changed.
  func setLinkState(_ state: LinkState, of name: String, reason: String?) {
    let changed = self.links.withLock { links in
      guard links[name] != state else { return false }
      links[name] = state
      return true
    }
    guard changed else { return }
    if state == .degraded {
      self.logger(for: .verified(name)).warning("link degraded", metadata: ["reason": "\(reason ?? "")"])
    }
    self.emit(.linkState(peer: name, state: state, reason: reason))
  }

  func emit(_ event: PeerEvent) {
    self.eventContinuation.yield(event)
  }

  /// A logger whose lines name the link.
  func logger(for identity: PeerIdentity) -> Logger {
    var logger = self.logger
    logger[metadataKey: "link"] = "\(identity)"
    if !identity.isVerified { logger[metadataKey: "link.verified"] = "false (plaintext: named by address)" }
    return logger
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

  static func rootCause(_ error: any Error) -> String {
    var current: any Error = error
    while true {
      if let rpc = current as? RPCError, let cause = rpc.cause {
        current = cause
      } else if let runtime = current as? RuntimeError, let cause = runtime.cause {
        current = cause
      } else if let peer = current as? PeerAgentError, let cause = peer.cause {
        current = cause
      } else if let io = current as? IOError {
        return String(cString: strerror(io.errnoCode)).lowercased()
      } else {
        return "\(current)"
      }
    }
  }

  // MARK: - Private

  /// Records the listener's failure and stops the peer — unless the peer is already stopping,
  /// when the listener's end is expected.
  private func fail(with error: any Error, into failure: LockedBox<(any Error)?>) {
    let stopping = self.state.withLock { state in
      switch state.lifecycle {
      case .idle, .running: return false
      case .draining, .finished: return true
      }
    }
    if stopping { return }
    failure.withLock { $0 = $0 ?? error }
    self.controlContinuation.yield(.failed)
  }

  private func listening(at address: PeerAddress) {
    let waiters = self.state.withLock { state in
      state.listeningAddress = address
      defer { state.addressWaiters.removeAll() }
      return state.addressWaiters
    }
    for waiter in waiters { waiter.resume(returning: address) }
    self.logger.info("listening", metadata: ["address": "\(address)", "mode": "\(self.config.mode)"])
    self.emit(.listening(address: address))
  }

  private func finish() {
    let waiters = self.state.withLock { state in
      state.lifecycle = .finished
      defer { state.addressWaiters.removeAll() }
      return state.addressWaiters
    }
    for waiter in waiters {
      waiter.resume(throwing: PeerAgentError(code: .notRunning, message: "the peer stopped before listening"))
    }
    self.eventContinuation.finish()
    self.controlContinuation.finish()
  }

  /// Waits until nothing is in flight (unanswered or being handled), or the grace period is
  /// over.
  private func drain() async {
    let deadline = ContinuousClock.now.advanced(by: self.config.shutdown.gracePeriod)
    while self.handling.load(ordering: .relaxed) > 0 || self.outbox.count() > 0, ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(10))
    }
  }

  /// Fails requests and waits that passed their deadline, ten times a second; prunes the
  /// de-duplication window once a minute.
  private func sweepDeadlines() async {
    var sweeps = 0
    while !Task.isCancelled {
      try? await Task.sleep(for: .milliseconds(100))
      let now = ContinuousClock.now
      self.registry.expireWaiters(now: now)
      self.outbox.expire(now: now)
      sweeps += 1
      if sweeps % 600 == 1 { self.inbox.prune() }
    }
  }
}

extension Peer: Service {}

/// Request ids: unique across runs and peers (a random 64-bit prefix per run) and increasing
/// within a run (a counter). Receivers de-duplicate by them.
final class RequestIDGenerator: Sendable {
  private let prefix: String
  private let counter = Atomic<UInt64>(0)

  init() {
    self.prefix = String(UInt64.random(in: .min ... .max), radix: 16)
  }

  func next() -> String {
    let n = self.counter.wrappingAdd(1, ordering: .relaxed).newValue
    return "\(self.prefix)-\(n)"
  }
}
