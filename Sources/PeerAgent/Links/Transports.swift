internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import NIOCore
internal import NIOPosix
internal import NIOSSL
internal import NIOHTTP2
internal import X509
internal import SwiftASN1
internal import Logging

extension LinkContext {
  /// The listener's transport: mutual TLS with this peer's verifier (or plaintext), a guard
  /// against malformed `grpc-timeout` on every stream, and a reason logged for every refused
  /// connection.
  func makeServerTransport(address: PeerAddress) -> HTTP2ServerTransport.Posix {
    let security: HTTP2ServerTransport.Posix.TransportSecurity
    if let material = self.material {
      let snapshot = material.current
      let failures = self.verificationFailures
      security = .mTLS(
        certificateChain: [.bytes(Array(snapshot.certificatePEM.utf8), format: .pem)],
        privateKey: .bytes(Array(snapshot.privateKeyPEM.utf8), format: .pem)
      ) { tls in
        tls.trustRoots = .certificates([.bytes(Array(snapshot.trustRootsPEM.utf8), format: .pem)])
        tls.clientCertificateVerification = .noHostnameVerification
        // A reloaded certificate and key are presented from the next handshake on.
        tls.certificateReloader = ListenerCertificateReloader(material: material)
        tls.customVerificationCallback = { certificates, promise in
          // The material of this handshake: what the last reload read.
          let verifier = material.current.verifier
          let eventLoop = promise.futureResult.eventLoop
          promise.completeWithTask {
            do {
              let verified = try await verifier.check(chain: try Self.parse(certificates), presentedBy: .dialer)
              return .certificateVerified(VerificationMetadata(try Self.validatedChain(verified)))
            } catch {
              failures.park("\(error)", on: eventLoop)
              return .failed
            }
          }
        }
      }
    } else {
      security = .plaintext
    }

    let failures = self.verificationFailures
    let verifiedConnections = self.verifiedConnections
    let isTLS = self.material != nil
    let report: @Sendable (String, String) -> Void = { remote, reason in
      self.logger.warning("refused connection", metadata: ["remote": "\(remote)", "reason": "\(reason)", "event": "refused"])
      self.events.emit(.refused(remote: remote, reason: reason))
    }
    // A refused handshake is reported once per 10 s per address and reason, and at most 20
    // times per 10 s in all: a flood of bad handshakes is a few lines, not a full disk.
    let refusals = ReportThrottle()
    let metrics = self.metrics
    let connectionLoops = self.connectionLoops
    let refused: @Sendable (String, String) -> Void = { remote, reason in
      metrics?.refused(.classify(reason))
      let address = ListenerConnectionObserver.host(of: remote)
      guard let same = refusals.admit("\(address) \(reason)"), let others = refusals.admit("all", allowing: 20) else {
        return
      }
      let held = same + others
      report(remote, held > 0 ? reason + " (\(held) more refusals held back since the last report)" : reason)
    }
    let flushCoalescing = self.config.transport.flushCoalescing
    let health = self.config.health
    let maximumMessageBytes = self.config.transport.maximumMessageBytes
    let limits = self.config.limits
    let limiter = ConnectionLimiter(
      maximum: OpenFiles.connectionCap(configured: limits.maximumConnections),
      maximumPerAddress: limits.maximumConnectionsPerAddress
    )
    if limiter.maximum < limits.maximumConnections {
      self.logger.notice(
        "at most \(limiter.maximum) connections: the open-files limit leaves no room for \(limits.maximumConnections)",
        metadata: ["openFiles": "\(OpenFiles.softLimit ?? 0)"]
      )
    }
    let throttle = ReportThrottle()
    let throttled: @Sendable (String, String, String) -> Void = { kind, remote, reason in
      guard let suppressed = throttle.admit(kind) else { return }
      let more = suppressed > 0 ? " (and \(suppressed) more like it since the last report)" : ""
      report(remote, reason + more)
    }
    let config = HTTP2ServerTransport.Posix.Config.defaults { config in
      config.rpc.maxRequestPayloadSize = maximumMessageBytes
      config.connection.maxIdleTime = limits.idleTimeout
      if let age = limits.maximumConnectionAge {
        config.connection.maxAge = age
        config.connection.maxGraceTime = limits.connectionAgeGrace
      }
      // swift-nio-http2 answers a stream beyond this with GOAWAY: the remote is told the
      // real limit, and StreamGuard refuses each stream beyond it alone.
      config.http2.maxConcurrentStreams = ConnectionGuard.internalStreamLimit(advertised: limits.maximumConcurrentStreams)
      config.connection.flushCoalescing = flushCoalescing.map {
        .init(maxFlushDelay: $0.maximumDelay, maxBytes: $0.maximumBytes)
      }
      if let interval = health.keepaliveInterval {
        // Ping idle dialers as often as they ping us, and accept their pings at up to twice
        // that rate, so that two peers with the same settings never GOAWAY each other.
        config.connection.keepalive = .init(
          time: interval,
          timeout: health.keepaliveTimeout,
          clientBehavior: .init(minPingIntervalWithoutCalls: interval / 2, allowWithoutCalls: true)
        )
      }
      config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
        channel.eventLoop.makeCompletedFuture {
          connectionLoops?.register(channel)
          let remote = channel.remoteAddress.map { ListenerConnectionObserver.format($0) } ?? "unknown address"
          let ticket: ConnectionLimiter.Ticket
          switch limiter.admit(channel, from: channel.remoteAddress?.ipAddress ?? remote) {
          case .refused(let reason):
            metrics?.refused(.connectionLimit)
            throttled("connection cap", remote, "connection refused: \(reason)")
            throw ConnectionRefused()
          case .admitted(let admitted, let evicted):
            ticket = admitted
            if let evicted {
              evicted.close(promise: nil)
              throttled("connection evicted", remote, "closed the oldest connection that had not opened a stream, to make room for this one")
            }
          }
          let connectionGuard = ConnectionGuard(limiter: limiter, ticket: ticket, limits: limits, isTLS: isTLS) { reason in
            let handshake = reason.hasPrefix("the TLS")
            metrics?.refused(handshake ? .handshakeTimeout : .firstStreamTimeout)
            throttled(handshake ? "handshake timeout" : "first stream timeout", remote, reason)
          }
          let observer = ListenerConnectionObserver(failures: failures, verified: verifiedConnections, report: refused)
          let pipeline = channel.pipeline.syncOperations
          if isTLS, let ssl = try? pipeline.handler(type: NIOSSLServerHandler.self) {
            try pipeline.addHandler(connectionGuard, position: .after(ssl))
            try pipeline.addHandler(observer, position: .after(ssl))
          } else if let http2 = try? pipeline.handler(type: NIOHTTP2Handler.self) {
            try pipeline.addHandler(connectionGuard, position: .first)
            // Right behind the HTTP/2 handler: its errors (a bad preface) travel towards the
            // tail, and the connection manager after it does not pass them on.
            try pipeline.addHandler(observer, position: .after(http2))
          } else {
            try pipeline.addHandler(connectionGuard, position: .first)
            try pipeline.addHandler(observer, position: .last)
          }
        }
      }
      config.channelDebuggingCallbacks.onAcceptHTTP2Stream = { channel in
        channel.eventLoop.makeCompletedFuture {
          let remote = channel.parent?.remoteAddress.map { ListenerConnectionObserver.format($0) } ?? "?"
          let guardHandler = GRPCTimeoutGuard { value in
            self.logger.warning(
              "refused a request with a malformed grpc-timeout",
              metadata: ["remote": "\(remote)", "grpc-timeout": "\(value)"]
            )
          }
          try channel.pipeline.syncOperations.addHandler(guardHandler, position: .first)
          let streamGuard = StreamGuard(maximumMessageBytes: maximumMessageBytes) { reason in
            throttled("refused message", remote, "a request was refused: \(reason)")
          }
          try channel.pipeline.syncOperations.addHandler(streamGuard, position: .first)
        }
      }
    }
    return HTTP2ServerTransport.Posix(
      address: address.socketAddress,
      transportSecurity: security,
      config: config,
      eventLoopGroup: self.loops?.group ?? .singletonMultiThreadedEventLoopGroup
    )
  }

  /// A dialer's transport to `target`: mutual TLS that verifies the listener's certificate
  /// against the CA and its name (the pinned identity, else the host dialed), records who
  /// answered in `diagnostics`, and records why a handshake failed.
  func makeClientTransport(
    to target: Peer.Target,
    on executor: EventLoopExecutor?,
    diagnostics: DialDiagnostics
  ) throws -> HTTP2ClientTransport.Posix {
    let security: HTTP2ClientTransport.Posix.TransportSecurity
    if let material = self.material {
      let snapshot = material.current
      security = .mTLS(
        certificateChain: [.bytes(Array(snapshot.certificatePEM.utf8), format: .pem)],
        privateKey: .bytes(Array(snapshot.privateKeyPEM.utf8), format: .pem)
      ) { tls in
        tls.trustRoots = .certificates([.bytes(Array(snapshot.trustRootsPEM.utf8), format: .pem)])
        // The callback below checks the name: NIOSSL's hostname check accepts any IP SAN
        // equal to the address dialed, so it cannot tell one loopback peer from another.
        tls.serverCertificateVerification = .noHostnameVerification
        tls.customVerificationCallback = { certificates, promise in
          promise.completeWithTask {
            do {
              let chain = try Self.parse(certificates)
              let verified = try await snapshot.verifier.check(
                chain: chain,
                presentedBy: .listener,
                expectedIdentity: target.expectedIdentity
              )
              if target.expectedIdentity == nil, let leaf = chain.first {
                try HostCheck.verify(leaf, matches: target.address.host)
              }
              if let refusal = snapshot.allowlist?.refusal(of: verified.identity.name, key: verified.key) {
                throw CertificateVerifier.Failure(refusal)
              }
              diagnostics.verified(
                RemotePeer(identity: verified.identity, key: verified.key, chain: verified.chain, presentedBy: .listener)
              )
              return .certificateVerified(VerificationMetadata(try Self.validatedChain(verified)))
            } catch {
              diagnostics.failed("the listener's certificate was refused: \(error)")
              return .failed
            }
          }
        }
      }
    } else {
      security = .plaintext
    }

    let isTLS = self.material != nil
    let flushCoalescing = self.config.transport.flushCoalescing
    let health = self.config.health
    let config = HTTP2ClientTransport.Posix.Config.defaults { config in
      config.connection.flushCoalescing = flushCoalescing.map {
        .init(maxFlushDelay: $0.maximumDelay, maxBytes: $0.maximumBytes)
      }
      config.connection.keepalive = health.keepaliveInterval.map {
        .init(time: $0, timeout: health.keepaliveTimeout, allowWithoutCalls: true)
      }
      config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
        channel.eventLoop.makeCompletedFuture {
          let observer = DialerConnectionObserver(diagnostics: diagnostics)
          let pipeline = channel.pipeline.syncOperations
          if isTLS, let ssl = try? pipeline.handler(type: NIOSSLClientHandler.self) {
            try pipeline.addHandler(observer, position: .after(ssl))
          } else {
            try pipeline.addHandler(observer, position: .first)
          }
        }
      }
    }

    let address = target.address
    let resolvable: any ResolvableTarget
    if address.isIPv6 {
      resolvable = .ipv6(address: address.host, port: address.port)
    } else if address.isIPv4 {
      resolvable = .ipv4(address: address.host, port: address.port)
    } else {
      resolvable = .dns(host: address.host, port: address.port)
    }
    return try HTTP2ClientTransport.Posix(
      target: resolvable,
      transportSecurity: security,
      config: config,
      // An event loop is a group of one: the connection runs on the dialer's loop.
      eventLoopGroup: executor?.eventLoop ?? MultiThreadedEventLoopGroup.singletonMultiThreadedEventLoopGroup
    )
  }
}

extension LinkContext {
  /// The presented certificates, as swift-certificates sees them.
  fileprivate static func parse(_ certificates: [NIOSSLCertificate]) throws -> [Certificate] {
    try certificates.map { try Certificate(derEncoded: try $0.toDERBytes()) }
  }

  /// The verified chain, for NIOSSL to keep on the connection: the listener's RPCs read it
  /// (a connection without it — a resumed TLS session, never verified here — is refused).
  fileprivate static func validatedChain(_ verified: CertificateVerifier.Verified) throws -> NIOSSL.ValidatedCertificateChain {
    NIOSSL.ValidatedCertificateChain(
      try verified.chain.map { certificate in
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der)
      }
    )
  }
}

/// Fails the setup of a connection the ``ConnectionLimiter`` refused: the channel is closed.
struct ConnectionRefused: Error {}

/// Checks that a listener's certificate names the host that was dialed, when no identity was
/// pinned: a DNS host among its DNS names, an IP host among its IP addresses.
enum HostCheck {
  static func verify(_ certificate: Certificate, matches host: String) throws(CertificateVerifier.Failure) {
    let names = (try? certificate.extensions.subjectAlternativeNames).map { Array($0) } ?? []
    if let bytes = IPAddressBytes.parse(host) {
      let ips = names.compactMap { name -> [UInt8]? in
        if case .ipAddress(let octets) = name { return Array(octets.bytes) }
        return nil
      }
      if ips.contains(bytes) { return }
    } else if CertificateNames.names(of: certificate).contains(host) {
      return
    }
    let name = CertificateNames.identity(of: certificate) ?? "?"
    throw CertificateVerifier.Failure(
      "certificate '\(name)' is not valid for '\(host)' (pin the peer instead: NAME@\(host):PORT)"
    )
  }
}
