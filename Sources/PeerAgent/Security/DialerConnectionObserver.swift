internal import NIOCore
internal import NIOSSL

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
