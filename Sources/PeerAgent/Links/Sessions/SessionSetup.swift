internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2

/// What every stream of one dialer session shares: the client on the session's connection, the
/// link context, and what the session learns as it runs.
struct SessionSetup: Sendable {
  let context: LinkContext
  let contact: Contact_Contact.Client<HTTP2ClientTransport.Posix>
  /// The name requests for this dialer's remote are queued under before it is known.
  let placeholder: String
  let remote: Dialer.RemoteTraits
  /// Set once the session's first stream is open (the connection is up).
  let connected: Signal
  /// Who answered, and with which key, once the TLS handshake is done.
  let remotePeer: @Sendable () -> RemotePeer
  /// Where a refusal of this session is recorded, for the dialer to report.
  let diagnostics: DialDiagnostics
  /// The dialer's event loop, which the session's streams run on.
  let executor: EventLoopExecutor?
  /// The remote's pushed requests (single-channel): watched once the listener heartbeats.
  let getTaskHealth = LinkHealth()
  /// Why the session ended, when one of its streams knows better than the others (the
  /// remote said goodbye on one): the first said wins.
  let ending = LockedBox<String?>(nil)

  /// Records why the session ends, unless a reason is recorded already.
  func ends(because reason: String) {
    self.ending.withLock { $0 = $0 ?? reason }
  }

  /// Reads a response stream's messages into `handle` until it ends; records the remote's
  /// goodbye (its shutdown) from the trailers. Returns whether the remote said goodbye.
  func read<Message: Sendable>(
    _ response: StreamingClientResponse<Message>,
    _ handle: (Message) async throws -> Void
  ) async throws -> Bool {
    for try await part in response.bodyParts {
      switch part {
      case .message(let message):
        try await handle(message)
      case .trailingMetadata(let trailers):
        if LinkEnding.Goodbye.isShutdown(trailers) {
          self.ends(because: "\(self.identity().name) shut down")
          return true
        }
      }
    }
    return false
  }

  /// Who answered, once the TLS handshake is done.
  func identity() -> PeerIdentity { self.remotePeer().identity }

  /// Runs `body` with the remote's key recorded (one name, one key): a remote whose name is
  /// connected with another key — a second certificate for it, or in dual mode its inbound
  /// connection with another key — ends the session, refused.
  func holdingKey(_ body: @escaping @Sendable () async throws -> Void) async throws {
    do {
      try await self.context.keys.holding(self.remotePeer(), body)
    } catch let conflict as IdentityKeys.Conflict {
      self.context.refusedKey(conflict)
      self.diagnostics.failed(conflict.description)
      throw Dialer.SessionEnded(reason: conflict.description)
    } catch let ended as LiveConnection.Ended {
      self.diagnostics.failed("the listener's certificate is \(ended)")
      throw Dialer.SessionEnded(reason: "\(ended)")
    }
  }

  /// Records a stream the listener refused (`permissionDenied`: its allowlist, or this name
  /// connected with another key; `unauthenticated`), for the dialer to report as a refusal
  /// rather than a dropped link.
  func noteRefusal(_ error: any Error) {
    guard let error = error as? RPCError, error.code == .permissionDenied || error.code == .unauthenticated else {
      return
    }
    self.diagnostics.failed("the listener refused this peer: \(error.message)")
  }

  /// The session a dialer in `mode` runs.
  func session(for mode: Mode) -> any DialerSession {
    switch mode {
    case .single: SingleChannelSession(setup: self)
    case .dual: DualChannelSession(setup: self)
    }
  }

  /// The options of every stream: fail fast, and the message limit in both directions.
  var options: CallOptions {
    var options = CallOptions.defaults
    // Fail fast when the remote is not there: the dialer owns the retrying.
    options.waitForReady = false
    // nio-transport 2.9.2 applies `maxRequestMessageBytes` to what it receives, too.
    options.maxRequestMessageBytes = self.context.config.transport.maximumMessageBytes
    options.maxResponseMessageBytes = self.context.config.transport.maximumMessageBytes
    return options
  }

  /// Ends the session when no stream opens within ``Peer/Config/Reconnect/connectTimeout``
  /// (a listener that accepts TCP and never completes TLS or HTTP/2); else waits until the
  /// session ends.
  func awaitFirstStream() async throws {
    let timeout = self.context.config.reconnect.connectTimeout
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
