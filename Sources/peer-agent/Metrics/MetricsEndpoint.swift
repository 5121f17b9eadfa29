internal import NIOCore
internal import NIOHTTP1
internal import NIOPosix
internal import PeerAgent
private import Synchronization

/// `peer-agent run --metrics HOST:PORT`: a small HTTP/1.1 listener for operators and
/// Prometheus — `GET /metrics` (Prometheus text), `GET /status` (``PeerStatus`` as JSON),
/// `GET /healthz` (`ok`).
///
/// Plain HTTP, no authentication: bind it to loopback or a private interface. Bounded: at most
/// ``maximumConnections`` at once, one request per connection (then closed), 10 s to send it,
/// request bodies are not kept.
struct MetricsEndpoint: Sendable {
  /// One response.
  struct Response: Sendable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: [UInt8]

    static func text(_ status: HTTPResponseStatus, _ text: String) -> Self {
      Self(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }
  }

  /// What the endpoint serves, by path (query ignored).
  struct Routes: Sendable {
    var metrics: @Sendable () -> [UInt8]
    var status: @Sendable () -> [UInt8]

    func respond(method: HTTPMethod, uri: String) -> Response {
      let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? uri
      let known = ["/metrics", "/status", "/healthz", "/"]
      guard known.contains(path) else {
        return .text(.notFound, "not found: try /metrics, /status or /healthz\n")
      }
      guard method == .GET || method == .HEAD else {
        return .text(.methodNotAllowed, "only GET and HEAD\n")
      }
      switch path {
      case "/metrics":
        return Response(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: self.metrics())
      case "/status":
        return Response(status: .ok, contentType: "application/json", body: self.status())
      case "/healthz":
        return .text(.ok, "ok\n")
      default:
        return .text(.ok, "peer-agent \(PeerAgentVersion.current): /metrics, /status, /healthz\n")
      }
    }
  }

  static let maximumConnections = 64
  static let requestTimeout = TimeAmount.seconds(10)

  let address: PeerAddress
  let routes: Routes

  /// `127.0.0.1:9100`, `[::1]:9100`.
  static func format(_ address: SocketAddress) -> String {
    let host = address.ipAddress ?? "?"
    let port = address.port ?? 0
    return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
  }

  /// Binds the listener; returns the channel (its `localAddress` has the port chosen for 0).
  func bind() async throws -> any Channel {
    let open = Atomic<Int>(0)
    let routes = self.routes
    let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 64)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        guard open.add(1, ordering: .relaxed).newValue <= Self.maximumConnections else {
          open.subtract(1, ordering: .relaxed)
          return channel.close()
        }
        channel.closeFuture.whenComplete { _ in open.subtract(1, ordering: .relaxed) }
        return channel.eventLoop.makeCompletedFuture {
          let pipeline = channel.pipeline.syncOperations
          try pipeline.addHandler(IdleStateHandler(readTimeout: Self.requestTimeout))
          try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
          try pipeline.addHandler(MetricsHTTPHandler(routes: routes))
        }
      }
    do {
      return try await bootstrap.bind(host: self.address.host, port: self.address.port).get()
    } catch {
      throw CommandFailure(message: "--metrics: cannot listen on \(self.address): \(error)")
    }
  }
}

/// Answers one request on a connection, then closes it.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let routes: MetricsEndpoint.Routes
  private var head: HTTPRequestHead?
  private var answered = false

  init(routes: MetricsEndpoint.Routes) {
    self.routes = routes
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch self.unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
    case .body:
      break  // not kept
    case .end:
      guard let head = self.head, !self.answered else { return }
      self.answered = true
      self.respond(context: context, to: head)
    }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      context.close(promise: nil)
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    context.close(promise: nil)
  }

  private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
    let response = self.routes.respond(method: head.method, uri: head.uri)
    var headers = HTTPHeaders()
    headers.add(name: "content-type", value: response.contentType)
    headers.add(name: "content-length", value: "\(response.body.count)")
    headers.add(name: "connection", value: "close")
    if response.status == .methodNotAllowed { headers.add(name: "allow", value: "GET, HEAD") }
    context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
    if head.method != .HEAD {
      context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
    }
    let channel = context.channel
    context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
      channel.close(promise: nil)
    }
  }
}
