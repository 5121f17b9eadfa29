internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging
private import Synchronization

/// Dials one remote peer and keeps the link up: connects, opens the streams the mode needs,
/// and on any failure waits (exponential backoff with jitter) and starts again, until cancelled.
///
/// One session is one connection:
/// - `sendStatus`, always: this peer's requests to the remote, and their replies;
/// - in single-channel mode also `getTask` (the remote's requests, pushed) and `tellResult`
///   (this peer's replies to them).
///
/// All of a session's streams are children of one task group: when one ends — or the
/// heartbeat finds the remote silent for too long — the session ends and the others are
/// cancelled, so a half-open link never lingers. Every session re-opens every stream, and the
/// outbox writes what is unanswered on the new `sendStatus`.
struct Dialer {
  let peer: Peer
  let target: Peer.Target

  /// Why a session ended.
  private struct SessionEnded: Error {
    var reason: String
  }

  /// The name the link is known by before the remote's certificate is seen.
  private var linkName: String {
    self.target.expectedIdentity ?? "\(self.target.address)"
  }

  func run() async {
    var logger = self.peer.logger
    logger[metadataKey: "target"] = "\(self.target)"
    var attempt = 0
    var lastReport: String?
    while !Task.isCancelled {
      let diagnostics = DialDiagnostics()
      self.peer.setLinkState(.connecting, of: self.linkName, reason: nil)
      let outcome = await self.runSession(diagnostics: diagnostics, logger: logger)
      if Task.isCancelled { return }

      if outcome.wasConnected {
        attempt = 0
        lastReport = nil
      }
      if let refusal = diagnostics.failure ?? self.plaintextRefusal(outcome) {
        if refusal != lastReport {
          logger.error("connection refused", metadata: ["reason": "\(refusal)"])
          self.peer.emit(.refused(remote: "\(self.target)", reason: refusal))
          lastReport = refusal
        }
      } else if !outcome.wasConnected, outcome.reason != lastReport {
        logger.notice(
          "cannot reach the remote peer yet; retrying with backoff",
          metadata: ["reason": "\(outcome.reason)"]
        )
        self.peer.emit(.unreachable(target: "\(self.target)", reason: outcome.reason))
        lastReport = outcome.reason
      }
      let delay = self.peer.config.reconnect.delay(attempt: attempt)
      attempt += 1
      try? await Task.sleep(for: delay)
    }
  }

  private struct Outcome {
    var wasConnected: Bool
    var reason: String
  }

  private func runSession(diagnostics: DialDiagnostics, logger: Logger) async -> Outcome {
    let connected = LockedBox(false)
    let transport: HTTP2ClientTransport.Posix
    do {
      transport = try self.peer.makeClientTransport(to: self.target, diagnostics: diagnostics)
    } catch {
      return Outcome(wasConnected: false, reason: "\(Peer.rootCause(error))")
    }

    let peer = self.peer
    let heartbeat = peer.heartbeat
    let announcement: Metadata = heartbeat.map {
      [heartbeatMetadataKey: "\($0.interval.milliseconds)"]
    } ?? [:]
    // The remote's pushed requests (single-channel): watched once the listener heartbeats.
    let getTaskHealth = LinkHealth()

    do {
      // The client's streams run on the connection's event loop (or the pool, if so configured).
      try await withTaskExecutorPreference(peer.streamExecutor) {
        try await withGRPCClient(transport: transport) { client in
          let contact = Contact_Contact.Client(wrapping: client)
          let options = CallOptions.defaults { options in
            // Fail fast when the remote is not there: this loop owns the retrying.
            options.waitForReady = false
          }
          try await withThrowingDiscardingTaskGroup { group in
            let (routes, routeContinuation) = AsyncStream<OutboundRoute>.makeStream()
            group.addTask {
              try await contact.sendStatus(
                metadata: announcement,
                options: options,
                requestProducer: { writer in
                  // The stream is open, so the TLS handshake is done and the listener's identity
                  // known. Attach now, not when response headers arrive: a server may send those
                  // only with its first reply (grpcio's generator handlers do).
                  let identity = self.identity(diagnostics)
                  let route = OutboundRoute(identity: identity, kind: .sendStatus, window: peer.outbox.window)
                  routeContinuation.yield(route)
                  routeContinuation.finish()
                  connected.withLock { $0 = true }
                  peer.attach(route)
                  try await withThrowingTaskGroup(of: Void.self) { streams in
                    streams.addTask {
                      try await route.drain(into: peer.outbox) { batch in
                        try await writer.write(contentsOf: batch.map(Contact_ClientMsg.init))
                      }
                    }
                    if let heartbeat {
                      streams.addTask {
                        try await heartbeat.run(
                          send: { if route.remoteHeartbeats { route.enqueue(.heartbeat) } },
                          watched: [route.health, getTaskHealth],
                          report: { peer.setLinkState($0, of: identity.name, reason: "heartbeats are late") }
                        )
                      }
                    }
                    try await streams.next()
                    streams.cancelAll()
                  }
                }
              ) { response in
                guard let route = await routes.first(where: { _ in true }) else { return }
                var reason = "the remote closed sendStatus"
                do {
                  if case .failure(let error) = response.accepted { throw error }
                  if response.metadata.announcesHeartbeats {
                    route.remoteHeartbeats = true
                    route.health.arm()
                  }
                  for try await result in response.messages {
                    route.health.heard()
                    if result.heartbeat { continue }
                    peer.deliver(ReplyBody(result), from: route.identity, on: route)
                  }
                } catch {
                  reason = "\(Peer.rootCause(error))"
                }
                peer.detach(route, reason: reason)
              }
              throw SessionEnded(reason: "sendStatus ended")
            }

            guard peer.config.mode == .single else { return }

            let results = WriteQueue<Contact_Result>()
            group.addTask {
              try await contact.tellResult(
                metadata: announcement,
                options: options,
                requestProducer: { writer in
                  while let batch = await results.next() {
                    try await writer.write(contentsOf: batch)
                  }
                }
              ) { response in
                _ = try response.message
              }
              throw SessionEnded(reason: "tellResult ended")
            }
            group.addTask {
              defer { results.finish() }
              try await contact.getTask(Contact_Empty(), metadata: announcement, options: options) { response in
                let identity = self.identity(diagnostics)
                let inbound = InboundRequests(peer: peer, identity: identity, link: .getTask) { result in
                  results.enqueue(result)
                }
                try await withThrowingDiscardingTaskGroup { handlers in
                  for try await task in response.messages {
                    if task.heartbeat { getTaskHealth.arm() } else { getTaskHealth.heard() }
                    await inbound.receive(id: task.id, text: task.task, isHeartbeat: task.heartbeat, in: &handlers)
                  }
                }
              }
              throw SessionEnded(reason: "getTask ended")
            }
          }
        }
      }
      return Outcome(wasConnected: connected.current, reason: "the session ended")
    } catch let ended as SessionEnded {
      return Outcome(wasConnected: connected.current, reason: ended.reason)
    } catch let stalled as Heartbeat.Stalled {
      return Outcome(wasConnected: connected.current, reason: stalled.description)
    } catch {
      return Outcome(wasConnected: connected.current, reason: Peer.rootCause(error))
    }
  }

  /// A plaintext dialer whose connection is closed before HTTP/2 starts has almost certainly
  /// reached a TLS listener: say so, rather than "unavailable".
  private func plaintextRefusal(_ outcome: Outcome) -> String? {
    guard self.peer.material == nil, !outcome.wasConnected,
      outcome.reason.contains("before completing the HTTP/2 connection preface")
    else { return nil }
    return "the listener closed the connection before HTTP/2 started: it most likely requires TLS (this peer runs --insecure)"
  }

  private func identity(_ diagnostics: DialDiagnostics) -> PeerIdentity {
    if self.peer.material != nil, let identity = diagnostics.identity {
      return identity
    }
    return .unverified(address: "\(self.target.address)")
  }
}

extension CallOptions {
  static func defaults(configure: (inout CallOptions) -> Void) -> CallOptions {
    var options = CallOptions.defaults
    configure(&options)
    return options
  }
}
