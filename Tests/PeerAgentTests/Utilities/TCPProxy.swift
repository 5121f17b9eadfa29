import NIOCore
import NIOPosix
import PeerAgent
import Synchronization

/// A TCP proxy on loopback, between two peers, that a test can break: ``dropAll()`` closes
/// every connection (the link drops), ``stall()`` stops moving bytes without closing anything
/// (a half-open link: neither data nor pings nor FINs pass), ``resume()`` lets traffic flow again.
final class TCPProxy: Sendable {
  private let upstream: SocketAddress
  private let connections = Mutex<[any Channel]>([])
  private let stalled = Atomic<Bool>(false)
  private let server = Mutex<(any Channel)?>(nil)
  private let acceptedCount = Atomic<Int>(0)

  /// How many connections the proxy accepted.
  var accepted: Int { self.acceptedCount.load(ordering: .relaxed) }

  init(upstream: PeerAddress) throws {
    self.upstream = try SocketAddress(ipAddress: upstream.host, port: upstream.port)
  }

  /// Starts listening on 127.0.0.1 (a free port); returns the port.
  func start() async throws -> Int {
    let upstream = self.upstream
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.autoRead, value: false)
      .childChannelInitializer { inbound in
        self.acceptedCount.add(1, ordering: .relaxed)
        let connect = ClientBootstrap(group: inbound.eventLoop)
          .channelOption(.autoRead, value: false)
          .connect(to: upstream)
        return connect.flatMapThrowing { outbound in
          let (a, b) = GlueHandler.matchedPair()
          try inbound.pipeline.syncOperations.addHandler(a)
          try outbound.pipeline.syncOperations.addHandler(b)
          self.track(inbound)
          self.track(outbound)
          if !self.stalled.load(ordering: .relaxed) {
            inbound.setOption(.autoRead, value: true).whenComplete { _ in }
            outbound.setOption(.autoRead, value: true).whenComplete { _ in }
          }
        }
      }
      .bind(host: "127.0.0.1", port: 0)
      .get()
    self.server.withLock { $0 = channel }
    return channel.localAddress!.port!
  }

  /// Closes every connection through the proxy; new ones are accepted.
  func dropAll() {
    let all = self.connections.withLock { connections in
      defer { connections.removeAll() }
      return connections
    }
    for channel in all { channel.close(promise: nil) }
  }

  /// Stops moving bytes on every connection, current and new, without closing any.
  func stall() {
    self.stalled.store(true, ordering: .relaxed)
    for channel in self.connections.withLock({ $0 }) {
      channel.setOption(.autoRead, value: false).whenComplete { _ in }
    }
  }

  /// Lets bytes flow again.
  func resume() {
    self.stalled.store(false, ordering: .relaxed)
    for channel in self.connections.withLock({ $0 }) {
      channel.setOption(.autoRead, value: true).whenComplete { _ in }
      channel.read()
    }
  }

  func stop() async {
    self.dropAll()
    try? await self.server.withLock { $0 }?.close()
  }

  private func track(_ channel: any Channel) {
    self.connections.withLock { $0.append(channel) }
    channel.closeFuture.whenComplete { _ in
      self.connections.withLock { $0.removeAll { $0 === channel } }
    }
  }
}

/// Passes bytes between two channels (after swift-nio's connect-proxy example), closing one
/// when the other closes.
private final class GlueHandler: ChannelDuplexHandler {
  typealias InboundIn = NIOAny
  typealias OutboundIn = NIOAny
  typealias OutboundOut = NIOAny

  private var partner: GlueHandler?
  private var context: ChannelHandlerContext?

  static func matchedPair() -> (GlueHandler, GlueHandler) {
    let first = GlueHandler()
    let second = GlueHandler()
    first.partner = second
    second.partner = first
    return (first, second)
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
    self.partner = nil
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    self.partner?.partnerWrite(data)
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.partner?.context?.flush()
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.partner?.context?.close(promise: nil)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    self.partner?.context?.close(promise: nil)
    context.close(promise: nil)
  }

  private func partnerWrite(_ data: NIOAny) {
    guard let context = self.context else { return }
    // Both channels live on the same event loop (the proxy connects upstream on the inbound
    // channel's loop).
    context.eventLoop.assertInEventLoop()
    context.write(data, promise: nil)
  }
}
