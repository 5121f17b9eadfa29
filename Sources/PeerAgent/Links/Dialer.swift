internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging
private import Synchronization

/// Dials one remote peer and keeps the link up: connects, opens the streams the mode needs,
/// and on any failure waits (exponential backoff with jitter) and starts again — until it is
/// cancelled, or its peer drains (no new session then).
///
/// One session is one connection:
/// - `sendStatus`, always: this peer's requests to the remote, and their replies;
/// - in single-channel mode also `getTask` (the remote's requests, pushed) and `tellResult`
///   (this peer's replies to them).
///
/// All of a session's streams are children of one task group: when one ends — or the
/// heartbeat finds the remote silent for too long — the session shuts its gRPC client down
/// gracefully and only then cancels the other streams, so a half-open link never lingers and
/// a first RPC still waiting for its connection is failed by the client instead of waiting
/// forever. Every session re-opens every stream, and the outbox writes what is unanswered on
/// the new `sendStatus`.
///
/// ## Why the sessions run in a task of their own
///
/// grpc-swift-nio-transport 2.9.2 does not resume an RPC that was cancelled just before it
/// joined the queue of a fresh channel (`GRPCChannel.enqueue`'s `.poke` branch; upstream issue
/// grpc-swift-nio-transport#108): only the client's connection task, still running, can fail it,
/// by a graceful shutdown. Swift cancels a task's child tasks before it runs the task's own
/// cancellation handlers, so a handler around `withGRPCClient` comes too late: the connection
/// task is cancelled along with the RPC. So ``run()`` turns its cancellation into a ``Signal``
/// and runs the sessions in one task of their own, which nothing cancels from outside: on the
/// signal, the session shuts its client down, then ends its streams, and the task ends. ``run()``
/// always awaits that task; it never outlives the dialer.
struct Dialer {
  let context: LinkContext
  let target: Peer.Target
  /// Points in a session where tests step in.
  var hooks = Hooks()
  /// The event loop this dialer's connections and streams run on (`nil`: the pool); the
  /// peer's dialers take the loops in turn.
  let executor: EventLoopExecutor?

  init(context: LinkContext, target: Peer.Target, hooks: Hooks = Hooks()) {
    self.context = context
    self.target = target
    self.hooks = hooks
    self.executor = context.loops?.next()
    if let executor { context.dialerLoops.withLock { $0.append(executor) } }
  }

  /// Points in a session where tests step in; they do nothing by default.
  struct Hooks: Sendable {
    /// Called in every session once its client runs, before its first RPC is made.
    var sessionStarted: @Sendable () async -> Void = {}
  }

  /// Why a session ended.
  struct SessionEnded: Error, CustomStringConvertible {
    var reason: String
    var description: String { self.reason }
  }

  /// Dials until cancelled or until the peer drains; returns once the current session, if
  /// any, has ended.
  func run() async {
    let stop = Signal()
    await withTaskCancellationHandler {
      let sessions = Task(executorPreference: self.executor) {
        await self.dial(until: stop)
      }
      await sessions.value
    } onCancel: {
      stop.set()
    }
  }

  private func dial(until stop: Signal) async {
    var logger = self.context.logger
    logger[metadataKey: "target"] = "\(self.target)"
    let remote = RemoteTraits()
    // One hub, or a failover list: one link, to the first it reaches, in order.
    let endpoints = self.target.endpoints
    var index = 0
    var attempt = 0
    var lastReport: String?
    let stopping = [stop, self.context.draining]
    while !stopping.contains(where: \.isSet) {
      let endpoint = endpoints[index]
      let diagnostics = DialDiagnostics()
      // Known by its queue name until the remote's certificate is seen.
      self.context.table.setState(.connecting, of: remote.name ?? self.target.queueName, reason: nil)
      let outcome = await self.runSession(to: endpoint, diagnostics: diagnostics, remote: remote, stop: stop)
      if stopping.contains(where: \.isSet) { return }

      let refused = diagnostics.failure ?? self.plaintextRefusal(outcome)
      // A session the listener refused (its streams answered permissionDenied) was not a
      // link: the backoff grows on every refusal, whatever its reason.
      if outcome.wasConnected, refused == nil {
        attempt = 0
        lastReport = nil
      }

      if let refusal = refused {
        // A redial cannot change this (and there is no other hub to try): wait the longest
        // between tries.
        let permanent = DialDiagnostics.isPermanent(refusal) && endpoints.count == 1
        if permanent {
          attempt = Peer.Config.Reconnect.attemptAtMaximum
        }
        if refusal != lastReport {
          let maximum = self.context.config.reconnect.maximumBackoff.seconds
          let every = maximum == maximum.rounded() && maximum < 1e9 ? "\(Int(maximum))" : "\(maximum)"
          let said = permanent
            ? refusal + "; a redial cannot fix this, so retrying only every \(every) s until the certificates or the remote change"
            : refusal
          logger.error("connection refused", metadata: ["reason": "\(said)", "event": "refused", "hub": "\(endpoint)"])
          self.context.events.emit(.refused(remote: "\(endpoint)", reason: said))
          lastReport = refusal
        }
      } else if !outcome.wasConnected, outcome.reason != lastReport {
        logger.notice(
          "cannot reach the remote peer yet; retrying with backoff",
          metadata: ["reason": "\(outcome.reason)", "event": "retrying", "hub": "\(endpoint)"]
        )
        self.context.events.emit(.unreachable(target: "\(endpoint)", reason: outcome.reason))
        lastReport = outcome.reason
      }
      let delay: Duration
      if endpoints.count > 1 {
        // A failover list: the next hub, after a short jittered pause (so that the agents of
        // a hub that drains or dies do not all arrive at once); the backoff grows only once
        // every hub of the list failed in a row.
        index = (index + 1) % endpoints.count
        delay = self.context.config.reconnect.delay(attempt: index == 0 && !outcome.wasConnected ? attempt : 0)
        if index == 0 && !outcome.wasConnected { attempt += 1 }
      } else {
        delay = self.context.config.reconnect.delay(attempt: attempt)
        attempt += 1
      }
      await Signal.sleep(for: delay, unlessAnyOf: stopping)
    }
  }

  struct Outcome {
    var wasConnected: Bool
    var reason: String
  }

  /// What this dialer learnt of its remote in earlier sessions.
  final class RemoteTraits: Sendable {
    private let heartbeats = Atomic<Bool>(false)
    private let knownName = Mutex<String?>(nil)

    /// The remote's name, once a session learnt it.
    var name: String? {
      get { self.knownName.withLock { $0 } }
      set { self.knownName.withLock { $0 = newValue } }
    }

    /// Whether the remote announced heartbeats in an earlier session: then a stream of a new
    /// session on which nothing at all arrives (no headers, no message, no heartbeat) within
    /// the heartbeat timeout is stalled, as it would be after its first heartbeat.
    var isKnownToHeartbeat: Bool {
      get { self.heartbeats.load(ordering: .relaxed) }
      set { self.heartbeats.store(newValue, ordering: .relaxed) }
    }
  }

  /// Runs one session: one connection, the streams its mode opens, until the first ends.
  private func runSession(to endpoint: Peer.Target, diagnostics: DialDiagnostics, remote: RemoteTraits, stop: Signal) async -> Outcome {
    let transport: HTTP2ClientTransport.Posix
    do {
      transport = try self.context.makeClientTransport(to: endpoint, on: self.executor, diagnostics: diagnostics)
    } catch {
      return Outcome(wasConnected: false, reason: ErrorChain.rootCause(error))
    }
    let connected = Signal()
    do {
      try await withGRPCClient(transport: transport) { client in
        await self.hooks.sessionStarted()
        let setup = SessionSetup(
          context: self.context,
          contact: Contact_Contact.Client(wrapping: client),
          placeholder: self.target.queueName,
          remote: remote,
          connected: connected,
          remotePeer: { self.remotePeer(diagnostics, endpoint: endpoint) },
          diagnostics: diagnostics,
          executor: self.executor
        )
        try await self.run(setup.session(for: self.context.config.mode), of: setup, on: client, until: stop)
      }
      return Outcome(wasConnected: connected.isSet, reason: "the session ended")
    } catch let ended as SessionEnded {
      return Outcome(wasConnected: connected.isSet, reason: ended.reason)
    } catch let stalled as Heartbeat.Stalled {
      return Outcome(wasConnected: connected.isSet, reason: stalled.description)
    } catch {
      return Outcome(wasConnected: connected.isSet, reason: ErrorChain.rootCause(error))
    }
  }

  /// Runs the session's streams, and the connect timeout, as children of one group until the
  /// first ends or `stop` is set; then shuts the client down and ends the rest. Throws why the
  /// session ended.
  private func run(
    _ session: any DialerSession,
    of setup: SessionSetup,
    on client: GRPCClient<HTTP2ClientTransport.Posix>,
    until stop: Signal
  ) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        await stop.wait()
        throw SessionEnded(reason: "shutdown")
      }
      for stream in session.streams {
        group.addTask { try await stream() }
      }
      group.addTask { try await setup.awaitFirstStream() }
      let ending: any Error
      do {
        try await group.next()
        ending = SessionEnded(reason: "the session ended")
      } catch {
        ending = error
      }
      // First the client: an RPC still waiting for the connection fails with `unavailable`
      // and new ones are refused; then the streams that are open.
      client.beginGracefulShutdown()
      group.cancelAll()
      while true {
        do {
          guard try await group.next() != nil else { break }
        } catch {
          continue
        }
      }
      throw ending
    }
  }

  /// A plaintext dialer whose connection is closed before HTTP/2 starts has almost certainly
  /// reached a TLS listener: say so, rather than "unavailable".
  private func plaintextRefusal(_ outcome: Outcome) -> String? {
    guard self.context.material == nil, !outcome.wasConnected,
      outcome.reason.contains("before completing the HTTP/2 connection preface")
    else { return nil }
    return "the listener closed the connection before HTTP/2 started: it most likely requires TLS (this peer runs --insecure)"
  }

  /// Who answered. A hub of a failover list is known by the list's name: to this peer the
  /// hubs are one remote, whose requests and window follow the link from hub to hub.
  private func remotePeer(_ diagnostics: DialDiagnostics, endpoint: Peer.Target) -> RemotePeer {
    if self.context.material != nil, var remote = diagnostics.remote {
      if let group = self.target.groupName(for: remote.identity.name) {
        remote.identity = PeerIdentity(name: group, isVerified: remote.identity.isVerified, hub: remote.identity.name)
      }
      return remote
    }
    if let group = self.target.groupName(for: endpoint.expectedIdentity ?? "") {
      return RemotePeer(identity: PeerIdentity(name: group, isVerified: false, hub: endpoint.expectedIdentity), key: nil)
    }
    return RemotePeer(identity: .unverified(address: "\(endpoint.address)"), key: nil)
  }
}
