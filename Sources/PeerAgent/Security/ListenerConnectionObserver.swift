internal import NIOCore
internal import NIOHTTP2
internal import NIOSSL
internal import NIOTLS

/// Watches one accepted connection (listener side) and reports why it was refused, once.
final class ListenerConnectionObserver: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = Any
  typealias InboundOut = Any
  typealias OutboundIn = Any
  typealias OutboundOut = Any

  private let failures: VerificationFailures
  private let verified: VerifiedConnections
  private let report: @Sendable (_ remote: String, _ reason: String) -> Void
  private var reported = false

  init(
    failures: VerificationFailures,
    verified: VerifiedConnections,
    report: @escaping @Sendable (_ remote: String, _ reason: String) -> Void
  ) {
    self.failures = failures
    self.verified = verified
    self.report = report
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    context.fireChannelRead(data)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
      // A resumed TLS session skips the verification callback: BoringSSL trusts the
      // certificate of the session it resumes. Nothing is trusted on a ticket here: a handshake
      // that left no chain verified now is closed (an expired or revoked certificate cannot
      // ride one), and the dialer's next, full handshake is verified.
      let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
      if let ssl, ssl.peerValidatedCertificateChain == nil {
        self.reported = true
        let remote = context.channel.remoteAddress.map { Self.format($0) } ?? "unknown address"
        self.report(remote, "a resumed TLS session was refused: its certificate was not verified in this handshake")
        context.close(promise: nil)
        return
      }
      // Verified: recorded until it closes, for reloads to check again; nothing more to watch.
      if let chain = ssl?.peerValidatedCertificateChain {
        self.verified.add(context.channel, chain: chain)
      }
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

  /// The host part of an address ``format(_:)`` made: `1.2.3.4` of `1.2.3.4:5`, `::1` of
  /// `[::1]:5`.
  static func host(of formatted: String) -> String {
    if formatted.hasPrefix("["), let end = formatted.firstIndex(of: "]") {
      return String(formatted[formatted.index(after: formatted.startIndex) ..< end])
    }
    guard let colon = formatted.lastIndex(of: ":") else { return formatted }
    return String(formatted[..<colon])
  }

  static func format(_ address: NIOCore.SocketAddress) -> String {
    switch address {
    case .v4: return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    case .v6: return "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
    case .unixDomainSocket: return address.pathname ?? "unix"
    }
  }
}
