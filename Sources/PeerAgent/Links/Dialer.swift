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
/// All of a session's streams are children of one task group: when one ends, the session ends
/// and the others are cancelled, so a half-open link never lingers.
struct Dialer {
  let peer: Peer
  let target: Peer.Target

  /// Why a session ended.
  private struct SessionEnded: Error {
    var reason: String
  }

  func run() async {
    var logger = self.peer.logger
    logger[metadataKey: "target"] = "\(self.target)"
    var attempt = 0
    var lastReport: String?
    while !Task.isCancelled {
      let diagnostics = DialDiagnostics()
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

    do {
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
              options: options,
              requestProducer: { writer in
                // The stream is open, so the TLS handshake is done and the listener's identity
                // known. Attach now, not when response headers arrive: a server may send those
                // only with its first reply (grpcio's generator handlers do).
                let identity = self.identity(diagnostics)
                let route = OutboundRoute(identity: identity, kind: .sendStatus)
                routeContinuation.yield(route)
                routeContinuation.finish()
                connected.withLock { $0 = true }
                self.peer.attach(route)
                for await outgoing in route.outgoing {
                  route.pending.markWritten(id: outgoing.id)
                  var message = Contact_ClientMsg()
                  message.msg = outgoing.text
                  message.id = outgoing.id
                  try await writer.write(message)
                }
              }
            ) { response in
              if case .failure(let error) = response.accepted { throw error }
              guard let route = await routes.first(where: { _ in true }) else { return }
              var reason = "the remote closed sendStatus"
              do {
                for try await result in response.messages {
                  if !route.pending.resolve(ReplyBody(result)) {
                    self.peer.logger(for: route.identity).notice(
                      "a reply on sendStatus matched no waiting request",
                      metadata: ["id": "\(result.id)"]
                    )
                  }
                }
              } catch {
                reason = "\(Peer.rootCause(error))"
              }
              self.peer.detach(route, reason: reason)
            }
            throw SessionEnded(reason: "sendStatus ended")
          }

          guard self.peer.config.mode == .single else { return }

          let (results, resultContinuation) = AsyncStream<Contact_Result>.makeStream()
          group.addTask {
            try await contact.tellResult(
              options: options,
              requestProducer: { writer in
                for await result in results {
                  try await writer.write(result)
                }
              }
            ) { response in
              _ = try response.message
            }
            throw SessionEnded(reason: "tellResult ended")
          }
          group.addTask {
            defer { resultContinuation.finish() }
            try await contact.getTask(Contact_Empty(), options: options) { response in
              let identity = self.identity(diagnostics)
              for try await task in response.messages {
                let reply = await self.peer.handle(
                  IncomingRequest(id: task.id, text: task.task, from: identity, link: .getTask)
                )
                resultContinuation.yield(Contact_Result(reply))
              }
            }
            throw SessionEnded(reason: "getTask ended")
          }
        }
      }
      return Outcome(wasConnected: connected.current, reason: "the session ended")
    } catch let ended as SessionEnded {
      return Outcome(wasConnected: connected.current, reason: ended.reason)
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
