internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging
private import Synchronization

/// The streams of one dialer session, on one connection: `sendStatus` (this peer's requests and
/// their replies) and, in single-channel mode, `getTask` with `tellResult` (the remote's pushed
/// requests and this peer's replies). ``Dialer`` runs each as a child of the session's group.
struct DialerSession: Sendable {
  let peer: Peer
  let contact: Contact_Contact.Client<HTTP2ClientTransport.Posix>
  /// The name requests for this dialer's remote are queued under before it is known.
  let placeholder: String
  let remote: Dialer.RemoteTraits
  /// Set once the session's first stream is open (the connection is up).
  let connected: Signal
  /// Who answered, once the TLS handshake is done.
  let identity: @Sendable () -> PeerIdentity
  /// The remote's pushed requests (single-channel): watched once the listener heartbeats.
  let getTaskHealth = LinkHealth()

  private var announcement: Metadata { self.peer.announcement }

  private var options: CallOptions {
    let maximum = self.peer.config.transport.maximumMessageBytes
    return CallOptions.defaults { options in
      // Fail fast when the remote is not there: the dialer owns the retrying.
      options.waitForReady = false
      // nio-transport 2.9.2 applies `maxRequestMessageBytes` to what it receives, too.
      options.maxRequestMessageBytes = maximum
      options.maxResponseMessageBytes = maximum
    }
  }

  /// This peer's requests to the remote, and their replies. Throws when the stream ends.
  func sendStatus() async throws {
    let peer = self.peer
    let remote = self.remote
    let (routes, routeContinuation) = AsyncStream<OutboundRoute>.makeStream()
    try await self.contact.sendStatus(
      metadata: self.announcement,
      options: self.options,
      requestProducer: { writer in
        // The stream is open, so the TLS handshake is done and the listener's identity known.
        // Attach now, not when response headers arrive: a server may send those only with its
        // first reply (grpcio's generator handlers do).
        let identity = self.identity()
        let route = OutboundRoute(identity: identity, kind: .sendStatus, window: peer.outbox.window)
        if remote.isKnownToHeartbeat {
          // Watched from the start: a stream on which nothing ever arrives is stalled too.
          route.remoteHeartbeats = true
          route.health.arm()
        }
        routeContinuation.yield(route)
        routeContinuation.finish()
        self.connected.set()
        peer.attach(route, placeholder: self.placeholder)
        // Detached here too: a stream whose response never starts (no headers) has no
        // response handler to do it.
        var reason = "the session ended"
        defer { peer.detach(route, reason: reason) }
        do {
          try await self.writeRequests(on: route, to: writer)
        } catch is CancellationError {
          throw CancellationError()
        } catch {
          reason = "\(error is Heartbeat.Stalled ? "\(error)" : Peer.rootCause(error))"
          throw error
        }
      }
    ) { response in
      if case .failure(let error) = response.accepted {
        routeContinuation.finish()
        throw error
      }
      guard let route = await routes.first(where: { _ in true }) else { return }
      var reason = "the remote closed sendStatus"
      do {
        route.remoteMaximumMessageBytes = response.metadata.announcedMaximumMessageBytes
        if response.metadata.announcesHeartbeats {
          remote.isKnownToHeartbeat = true
          route.remoteHeartbeats = true
          route.health.arm()
        }
        for try await result in response.messages {
          route.health.heard()
          if result.heartbeat { continue }
          peer.deliver(ReplyBody(result), from: route.identity, on: route)
        }
      } catch is CancellationError {
        reason = "the session ended"
      } catch {
        reason = "\(Peer.rootCause(error))"
      }
      peer.detach(route, reason: reason)
    }
    throw Dialer.SessionEnded(reason: "sendStatus ended")
  }

  /// Writes what the outbox queues on `route`, and heartbeats, until the route ends or the
  /// heartbeat finds the remote silent.
  private func writeRequests(
    on route: OutboundRoute,
    to writer: RPCWriter<Contact_ClientMsg>
  ) async throws {
    let peer = self.peer
    let getTaskHealth = self.getTaskHealth
    let identity = route.identity
    try await withThrowingTaskGroup(of: Void.self) { streams in
      streams.addTask {
        try await route.drain(into: peer.outbox) { batch in
          try await writer.write(contentsOf: batch.map(Contact_ClientMsg.init))
        }
      }
      if let heartbeat = peer.heartbeat {
        streams.addTask {
          try await heartbeat.run(
            send: { if route.remoteHeartbeats { route.enqueue(.heartbeat) } },
            watched: [route.health, getTaskHealth],
            report: { peer.setLinkState($0, of: identity.name, reason: "heartbeats are late") }
          )
        }
      }
      defer { streams.cancelAll() }
      try await streams.next()
    }
  }

  /// How one of the two single-channel inbound streams ended.
  private enum InboundEnd: Sendable {
    case getTask(String)
    case tellResult(String)
    case flushTimedOut
  }

  /// The remote's requests, pushed on `getTask`, and this peer's replies on `tellResult`.
  /// Throws when either stream ends.
  ///
  /// When `getTask` ends — cleanly or not — every reply to a task already received is still
  /// written on `tellResult`, which is then half-closed, never cancelled with replies pending
  /// (within the heartbeat timeout); the session then ends and the dialer opens both again
  /// after its backoff.
  func pushedRequests() async throws {
    let peer = self.peer
    let results = WriteQueue<Contact_Result>()
    let end = try await withThrowingTaskGroup(of: InboundEnd.self) { pair in
      pair.addTask {
        do {
          try await self.contact.tellResult(
            metadata: self.announcement,
            options: self.options,
            requestProducer: { writer in
              while let batch = await results.next() {
                try await writer.write(contentsOf: batch)
              }
            }
          ) { response in
            _ = try response.message
          }
          return .tellResult("the remote ended tellResult")
        } catch {
          return .tellResult("tellResult failed: \(Peer.rootCause(error))")
        }
      }
      pair.addTask {
        // Every handler has returned (and queued its reply) before getTask returns.
        defer { results.finish() }
        do {
          try await self.receiveTasks(replyingTo: results)
          return .getTask("the remote ended getTask")
        } catch {
          return .getTask("getTask failed: \(Peer.rootCause(error))")
        }
      }
      defer { pair.cancelAll() }
      guard let first = try await pair.next() else { return InboundEnd.getTask("getTask ended") }
      guard case .getTask = first else { return first }
      // Let tellResult write what is queued and half-close; it returns once the remote
      // answers the half-close.
      pair.addTask {
        try await Task.sleep(for: peer.config.health.heartbeatTimeout)
        return .flushTimedOut
      }
      if case .flushTimedOut = try await pair.next() {
        peer.logger.warning(
          "tellResult did not finish after getTask ended: replies still queued are sent again when the remote resends their requests"
        )
      }
      return first
    }
    switch end {
    case .getTask(let reason), .tellResult(let reason):
      throw Dialer.SessionEnded(reason: reason)
    case .flushTimedOut:
      throw Dialer.SessionEnded(reason: "getTask ended")
    }
  }

  private func receiveTasks(replyingTo results: WriteQueue<Contact_Result>) async throws {
    let peer = self.peer
    let getTaskHealth = self.getTaskHealth
    if self.remote.isKnownToHeartbeat { getTaskHealth.arm() }
    try await self.contact.getTask(Contact_Empty(), metadata: self.announcement, options: self.options) { response in
      self.connected.set()
      let inbound = InboundRequests(peer: peer, identity: self.identity(), link: .getTask) { result in
        results.enqueue(result)
      }
      try await withThrowingDiscardingTaskGroup { handlers in
        for try await task in response.messages {
          if task.heartbeat {
            self.remote.isKnownToHeartbeat = true
            getTaskHealth.arm()
          } else {
            getTaskHealth.heard()
          }
          await inbound.receive(id: task.id, text: task.task, isHeartbeat: task.heartbeat, in: &handlers)
        }
      }
    }
  }

  /// Ends the session when no stream opens within ``Peer/Config/Reconnect/connectTimeout``
  /// (a listener that accepts TCP and never completes TLS or HTTP/2); else waits until the
  /// session ends.
  func awaitFirstStream() async throws {
    let timeout = self.peer.config.reconnect.connectTimeout
    await Signal.sleep(for: timeout, unlessAnyOf: [self.connected])
    if Task.isCancelled { return }
    guard self.connected.isSet else {
      throw Dialer.SessionEnded(
        reason: "no stream opened within \(timeout.milliseconds) ms: the TLS handshake or HTTP/2 start did not complete"
      )
    }
    // Nothing more to watch: wait for the session to end.
    await Signal().wait()
  }
}
