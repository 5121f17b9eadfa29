internal import NIOCore
internal import NIOHTTP1
internal import NIOPosix

/// One `GET` over plain HTTP/1.1, for `peer-agent status`: the status code and the body (at
/// most ``maximumBodyBytes``).
enum HTTPGet {
  static let maximumBodyBytes = 16 << 20

  struct Failure: Error, CustomStringConvertible {
    var description: String
  }

  static func fetch(host: String, port: Int, path: String, timeout: TimeAmount) async throws -> (status: UInt, body: [UInt8]) {
    let response = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: (UInt, [UInt8]).self)
    let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connectTimeout(timeout)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHTTPClientHandlers()
          try channel.pipeline.syncOperations.addHandler(Collector(response: response))
        }
      }
    let channel: any Channel
    do {
      channel = try await bootstrap.connect(host: host, port: port).get()
    } catch {
      response.fail(error)
      throw error
    }
    let timer = channel.eventLoop.scheduleTask(in: timeout) {
      response.fail(Failure(description: "no answer within \(timeout.nanoseconds / 1_000_000_000) s"))
      channel.close(promise: nil)
    }
    defer {
      timer.cancel()
      channel.close(promise: nil)
    }
    var headers = HTTPHeaders()
    headers.add(name: "host", value: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
    headers.add(name: "connection", value: "close")
    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
    channel.write(HTTPClientRequestPart.head(head), promise: nil)
    try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
    return try await response.futureResult.get()
  }

  private final class Collector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let response: EventLoopPromise<(UInt, [UInt8])>
    var status: UInt = 0
    var body: [UInt8] = []

    init(response: EventLoopPromise<(UInt, [UInt8])>) {
      self.response = response
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      switch self.unwrapInboundIn(data) {
      case .head(let head):
        self.status = head.status.code
      case .body(let buffer):
        guard self.body.count + buffer.readableBytes <= HTTPGet.maximumBodyBytes else {
          self.response.fail(Failure(description: "the answer is larger than \(HTTPGet.maximumBodyBytes) bytes"))
          context.close(promise: nil)
          return
        }
        self.body += buffer.readableBytesView
      case .end:
        self.response.succeed((self.status, self.body))
      }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
      self.response.fail(error)
      context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
      self.response.fail(Failure(description: "the connection closed before the answer was complete"))
    }
  }
}
