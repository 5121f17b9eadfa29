internal import NIOCore
internal import NIOHTTP1
internal import NIOPosix
internal import PeerAgent
private import Synchronization

/// `peer-agent run --metrics HOST:PORT`: a small HTTP/1.1 listener for operators and
/// Prometheus — `GET /metrics` (Prometheus text), `GET /status` (``PeerStatus`` as JSON),
/// `GET /healthz` (`ok`).
///
/// Plain HTTP, no authentication: bind it to loopback or a private interface. Bounded: one
/// request per connection (then closed), ``requestTimeout`` for the whole request however
/// slowly its bytes come, at most ``maximumConnectionsPerAddress`` from one address, and at most
/// ``maximumConnections`` in all — beyond which the oldest connection still waiting for its
/// request gives way, so that a liveness probe (`/healthz`) is answered while slow clients hold
/// the rest. Request bodies are not kept.
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
  static let maximumConnectionsPerAddress = 8
  static let requestTimeout = TimeAmount.seconds(5)

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
    let open = MetricsConnections()
    let routes = self.routes
    let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 64)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        guard open.admit(channel) else { return channel.close() }
        // The whole request within the timeout, not per byte: a client that trickles one
        // byte at a time is closed all the same.
        let deadline = channel.eventLoop.scheduleTask(in: Self.requestTimeout) { channel.close(promise: nil) }
        channel.closeFuture.whenComplete { _ in
          deadline.cancel()
          open.remove(channel)
        }
        return channel.eventLoop.makeCompletedFuture {
          let pipeline = channel.pipeline.syncOperations
          try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
          try pipeline.addHandler(MetricsHTTPHandler(routes: routes) { open.answered(channel) })
        }
      }
    do {
      return try await bootstrap.bind(host: self.address.host, port: self.address.port).get()
    } catch {
      throw CommandFailure(message: "--metrics: cannot listen on \(self.address): \(error)")
    }
  }
}

/// The metrics endpoint's open connections: at most ``MetricsEndpoint/maximumConnectionsPerAddress``
/// per address; at ``MetricsEndpoint/maximumConnections`` the oldest one still waiting for its
/// request is closed to make room.
final class MetricsConnections: Sendable {
  private struct Entry {
    var channel: any Channel
    var address: String
    var order: Int
  }

  private struct State {
    var entries: [ObjectIdentifier: Entry] = [:]
    var perAddress: [String: Int] = [:]
    var next = 0
  }

  private let state = Mutex(State())

  private enum Admission {
    case refused
    case admitted(evicting: (any Channel)?)
  }

  /// Records `channel`, or refuses it when its address holds its share; when all the
  /// connections are open, the oldest one still waiting for its request gives way.
  /// Connections being answered are not counted (``answered(_:)``): they close as soon as
  /// their answer is written.
  func admit(_ channel: any Channel) -> Bool {
    let address = channel.remoteAddress?.ipAddress ?? "?"
    let admission = self.state.withLock { state -> Admission in
      guard state.perAddress[address, default: 0] < MetricsEndpoint.maximumConnectionsPerAddress else { return .refused }
      var evicted: (any Channel)?
      if state.entries.count >= MetricsEndpoint.maximumConnections {
        guard let oldest = state.entries.min(by: { $0.value.order < $1.value.order }) else { return .refused }
        evicted = oldest.value.channel
        Self.drop(oldest.key, from: &state)
      }
      state.next += 1
      state.entries[ObjectIdentifier(channel)] = Entry(channel: channel, address: address, order: state.next)
      state.perAddress[address, default: 0] += 1
      return .admitted(evicting: evicted)
    }
    switch admission {
    case .refused:
      return false
    case .admitted(let evicted):
      evicted?.close(promise: nil)
      return true
    }
  }

  /// `channel` has its request and is being answered: it leaves the count (it closes once the
  /// answer is written, and is never evicted before), so a client that sends its next request
  /// at once is not refused for a connection still closing.
  func answered(_ channel: any Channel) {
    self.state.withLock { Self.drop(ObjectIdentifier(channel), from: &$0) }
  }

  func remove(_ channel: any Channel) {
    self.state.withLock { Self.drop(ObjectIdentifier(channel), from: &$0) }
  }

  private static func drop(_ id: ObjectIdentifier, from state: inout State) {
    guard let entry = state.entries.removeValue(forKey: id) else { return }
    state.perAddress[entry.address, default: 1] -= 1
    if state.perAddress[entry.address] == 0 { state.perAddress[entry.address] = nil }
  }
}

/// Answers one request on a connection, then closes it.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let routes: MetricsEndpoint.Routes
  private let onRequest: () -> Void
  private var head: HTTPRequestHead?
  private var answered = false

  init(routes: MetricsEndpoint.Routes, onRequest: @escaping () -> Void = {}) {
    self.routes = routes
    self.onRequest = onRequest
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
      self.onRequest()
      self.respond(context: context, to: head)
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
