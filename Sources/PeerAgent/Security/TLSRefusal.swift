internal import NIOCore
internal import NIOHTTP2
internal import NIOSSL
internal import NIOTLS
private import Synchronization

/// Turns what a failed handshake leaves behind — a BoringSSL error, an alert from the other
/// side, a connection closed early — into one sentence a person can act on.
enum TLSRefusal {
  /// The side that observed the failure.
  enum Observer {
    case listener
    case dialer
  }

  /// Describes a failure seen on a connection, or `nil` when `error` is not about TLS or the
  /// protocol (a plain connection reset is reported elsewhere).
  static func describe(_ error: any Error, observedBy observer: Observer) -> String? {
    let text = String(describing: error)
    func has(_ needle: String) -> Bool { text.contains(needle) }

    switch observer {
    case .listener:
      if has("PEER_DID_NOT_RETURN_A_CERTIFICATE") || has("CERTIFICATE_REQUIRED") {
        return "the dialer sent no client certificate (mutual TLS is required)"
      }
      if has("WRONG_VERSION_NUMBER") || has("HTTP_REQUEST") || has("UNKNOWN_PROTOCOL")
        || has("unexpectedRecordTooLarge") || has("RECORD_TOO_LARGE")
        || has("PACKET_LENGTH_TOO_LONG")
      {
        return "the dialer does not speak TLS (a plaintext client, e.g. one run with --insecure)"
      }
      if error is NIOHTTP2Errors.BadClientMagic {
        return "the dialer did not send HTTP/2 in plaintext (a TLS client? this listener runs --insecure)"
      }
      if has("CERTIFICATE_VERIFY_FAILED") {
        return "the dialer's certificate was refused"
      }
      if has("ALERT_UNKNOWN_CA") || has("ALERT_BAD_CERTIFICATE") || has("ALERT_CERTIFICATE") {
        return "the dialer refused this listener's certificate (\(Self.alertName(text)))"
      }
      if error is NIOSSLError || error is BoringSSLError {
        return "TLS handshake failed: \(text)"
      }
      return nil

    case .dialer:
      if has("CERTIFICATE_REQUIRED") {
        return "the listener requires a client certificate and none was sent"
      }
      if has("ALERT_CERTIFICATE_EXPIRED") {
        return "the listener refused this peer's certificate: it has expired"
      }
      if has("ALERT_UNKNOWN_CA") || has("ALERT_BAD_CERTIFICATE") || has("ALERT_CERTIFICATE_UNKNOWN")
        || has("ALERT_HANDSHAKE_FAILURE") || has("ALERT_CERTIFICATE_REVOKED")
        || has("ALERT_UNSUPPORTED_CERTIFICATE")
      {
        return
          "the listener refused this peer's certificate (\(Self.alertName(text))): is it signed by the listener's CA, and still valid?"
      }
      if has("WRONG_VERSION_NUMBER") || has("UNKNOWN_PROTOCOL") || has("RECORD_TOO_LARGE")
        || has("PACKET_LENGTH_TOO_LONG")
      {
        return "the listener does not speak TLS (is it running with --insecure?)"
      }
      if has("CERTIFICATE_VERIFY_FAILED") {
        return "the listener's certificate was refused"
      }
      if error is NIOSSLError || error is BoringSSLError {
        return "TLS handshake failed: \(text)"
      }
      return nil
    }
  }

  private static func alertName(_ text: String) -> String {
    for name in [
      "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED",
      "HANDSHAKE_FAILURE", "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_REQUIRED",
    ] where text.contains(name) {
      return "TLS alert \(name.lowercased())"
    }
    return "TLS alert"
  }
}

/// What the custom verification callback found, handed to the channel handler that reports
/// the refusal.
///
/// The listener's verification callback is shared by every connection and is not told which
/// one it serves; it runs synchronously on the connection's event loop, and the handshake
/// fails right after it on that same loop, so the reason is parked per event loop and taken by
/// the first refusal reported there.
final class VerificationFailures: Sendable {
  private let reasons = Mutex<[ObjectIdentifier: String]>([:])

  init() {}

  func park(_ reason: String, on eventLoop: any EventLoop) {
    self.reasons.withLock { $0[ObjectIdentifier(eventLoop)] = reason }
  }

  func take(on eventLoop: any EventLoop) -> String? {
    self.reasons.withLock { $0.removeValue(forKey: ObjectIdentifier(eventLoop)) }
  }
}

/// Watches one accepted connection (listener side) and reports why it was refused, once.
final class ListenerConnectionObserver: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = Any
  typealias InboundOut = Any
  typealias OutboundIn = Any
  typealias OutboundOut = Any

  private let failures: VerificationFailures
  private let report: @Sendable (_ remote: String, _ reason: String) -> Void
  private var reported = false

  init(
    failures: VerificationFailures,
    report: @escaping @Sendable (_ remote: String, _ reason: String) -> Void
  ) {
    self.failures = failures
    self.report = report
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    context.fireChannelRead(data)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
      // Verified: nothing more to watch.
      context.fireUserInboundEventTriggered(event)
      context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
      return
    }
    context.fireUserInboundEventTriggered(event)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if !self.reported, var reason = TLSRefusal.describe(error, observedBy: .listener) {
      self.reported = true
      if let detail = self.failures.take(on: context.eventLoop) {
        reason = "the dialer's certificate was refused: \(detail)"
      }
      let remote = context.channel.remoteAddress.map { Self.format($0) } ?? "unknown address"
      self.report(remote, reason)
    }
    context.fireErrorCaught(error)
  }

  static func format(_ address: NIOCore.SocketAddress) -> String {
    switch address {
    case .v4: return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    case .v6: return "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
    case .unixDomainSocket: return address.pathname ?? "unix"
    }
  }
}

/// What one dialer learned about its connection: who the listener proved to be, or why the
/// handshake failed. Shared between the verification callback, the connection's observer, and
/// the dialer's session.
final class DialDiagnostics: Sendable {
  private struct State {
    var identity: PeerIdentity?
    var failure: String?
  }

  private let state = Mutex(State())

  init() {}

  var identity: PeerIdentity? { self.state.withLock { $0.identity } }
  var failure: String? { self.state.withLock { $0.failure } }

  func verified(_ identity: PeerIdentity) {
    self.state.withLock {
      $0.identity = identity
      $0.failure = nil
    }
  }

  func failed(_ reason: String) {
    self.state.withLock { state in
      // The first, most specific reason wins (the callback's, before the generic alert).
      if state.failure == nil { state.failure = reason }
    }
  }
}

/// Watches one dialed connection and records why it failed.
final class DialerConnectionObserver: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = Any
  typealias InboundOut = Any

  private let diagnostics: DialDiagnostics

  init(diagnostics: DialDiagnostics) {
    self.diagnostics = diagnostics
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    context.fireChannelRead(data)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let reason = TLSRefusal.describe(error, observedBy: .dialer) {
      self.diagnostics.failed(reason)
    }
    context.fireErrorCaught(error)
  }
}
