internal import GRPCCore
internal import X509
internal import GRPCNIOTransportHTTP2
internal import Logging

/// Runs one peer's listener and dialers until it is told to stop, then stops them in order:
/// no new requests, the grace period for what is in flight, what is left failed, every link
/// ended, the listener closed.
struct Supervisor {
  let context: LinkContext
  let lifecycle: PeerLifecycle

  /// Runs until a shutdown command (graceful), a failure command (the listener failed) or
  /// cancellation; throws the listener's failure.
  func run() async throws {
    let failure = LockedBox<(any Error)?>(nil)
    let serverStopped = LockedBox(false)
    try await withThrowingDiscardingTaskGroup { group in
      var server: GRPCServer<HTTP2ServerTransport.Posix>?
      if let listen = self.context.config.listen {
        let transport = self.context.makeServerTransport(address: listen)
        let grpcServer = GRPCServer(
          transport: transport,
          services: [ContactService(context: self.context), HealthService(lifecycle: self.lifecycle)]
        )
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
            self.listening(at: PeerAddress(bound) ?? listen)
          } catch {
            self.fail(with: error, into: failure)
          }
        }
      }
      for target in self.context.config.connect {
        group.addTask { await Dialer(context: self.context, target: target).run() }
      }
      group.addTask { await self.sweepDeadlines() }
      if let metrics = self.context.metrics {
        group.addTask { await self.sampleGauges(into: metrics) }
      }
      if self.context.material != nil {
        group.addTask { await SecurityReload(context: self.context).watch() }
      }

      var graceful = false
      for await command in self.lifecycle.commands {
        switch command {
        case .dial(let target):
          group.addTask { await Dialer(context: self.context, target: target).run() }
          continue
        case .shutdown:
          graceful = true
        case .failed:
          graceful = false
        }
        break
      }

      self.lifecycle.beginDraining()
      self.context.draining.set()
      if graceful { await self.drain() }
      let shuttingDown = PeerAgentError(
        code: .shuttingDown,
        message: self.context.outbox.store.isDurable
          ? "the peer shut down before the reply came; the request stays in the state store for the next run"
          : "the peer shut down before the reply came"
      )
      self.context.outbox.close(with: shuttingDown)
      self.context.closing.set()
      self.context.table.close(with: shuttingDown, reason: "shutdown")
      server?.beginGracefulShutdown()
      if graceful, server != nil {
        // Let streams the remotes are closing finish (a last reply, a half-close) before
        // cancelling what is left.
        let deadline = ContinuousClock.now.advanced(by: .seconds(1))
        while !serverStopped.current, ContinuousClock.now < deadline, !Task.isCancelled {
          try? await Task.sleep(for: .milliseconds(10))
        }
      }
      group.cancelAll()
    }
    if let error = failure.current {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "cannot listen on \(self.context.config.listen.map { "\($0)" } ?? "?"): \(ErrorChain.rootCause(error))",
        cause: error
      )
    }
  }

  /// Records the listener's failure and stops the peer — unless the peer is already stopping,
  /// when the listener's end is expected.
  private func fail(with error: any Error, into failure: LockedBox<(any Error)?>) {
    guard self.lifecycle.acceptsRequests else { return }
    failure.withLock { $0 = $0 ?? error }
    self.lifecycle.send(.failed)
  }

  private func listening(at address: PeerAddress) {
    self.lifecycle.listeningAddress.complete(.success(address))
    self.context.logger.info("listening", metadata: ["address": "\(address)", "mode": "\(self.context.config.mode)"])
    self.context.events.emit(.listening(address: address))
  }

  /// Waits until nothing is in flight (unanswered or being handled), or the grace period is
  /// over.
  private func drain() async {
    let deadline = ContinuousClock.now.advanced(by: self.context.config.shutdown.gracePeriod)
    // Cancellation ends the grace period (a second Ctrl-C): the sleep would return at once
    // and the loop spin until the deadline.
    while self.context.inbox.inFlight > 0 || self.context.outbox.count() > 0, ContinuousClock.now < deadline, !Task.isCancelled {
      try? await Task.sleep(for: .milliseconds(10))
    }
  }

  /// Sets the gauges every ``Peer/Config/Observability/sampleInterval``: links by state, the
  /// outbox depth, the time left on this peer's certificate.
  private func sampleGauges(into metrics: PeerMetrics) async {
    let interval = max(self.context.config.observability.sampleInterval, .milliseconds(10))
    while !Task.isCancelled {
      metrics.sample(
        states: self.context.table.states,
        outboxDepth: self.context.outbox.count(),
        certificateExpires: self.context.material?.current.ownCertificate.notValidAfter
      )
      try? await Task.sleep(for: interval)
    }
  }

  /// Fails requests and waits that passed their deadline, ten times a second; prunes the
  /// de-duplication window once a minute; reports queued store writes that failed, once a
  /// second.
  private func sweepDeadlines() async {
    var sweeps = 0
    var failedWrites = 0
    while !Task.isCancelled {
      try? await Task.sleep(for: .milliseconds(100))
      let now = ContinuousClock.now
      self.context.table.expireWaiters(now: now)
      self.context.outbox.expire(now: now, connected: self.context.table.connectedNames)
      sweeps += 1
      if sweeps % 600 == 1 { await self.context.inbox.prune() }
      if sweeps % 10 == 0, self.context.outbox.store.failedWrites > failedWrites {
        let now = self.context.outbox.store.failedWrites
        self.context.logger.error(
          "the state store failed to record answers or removals: those requests may be sent again after a restart (the receiver answers repeats from its window)",
          metadata: ["failed": "\(now - failedWrites)"]
        )
        failedWrites = now
      }
    }
  }
}
