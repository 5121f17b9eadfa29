internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// Refuses a request whose `grpc-timeout` header is malformed, before grpc-swift sees it.
///
/// grpc-swift-2 2.4.3 decodes `grpc-timeout: -1S` into a negative amount and then traps on a
/// precondition, taking down the whole process and every link of the peer. This handler sits
/// first on every inbound HTTP/2 stream of the listener. A valid header (1–8 digits and one of
/// `H M S m u n`, per the gRPC spec) passes untouched; anything else is answered with status
/// `INVALID_ARGUMENT` and the stream's frames go no further.
final class GRPCTimeoutGuard: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias InboundOut = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private var refused = false
  private let onRefuse: @Sendable (String) -> Void

  init(onRefuse: @escaping @Sendable (String) -> Void) {
    self.onRefuse = onRefuse
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if self.refused { return }  // drop the rest of a refused stream
    let payload = Self.unwrapInboundIn(data)
    if case .headers(let headers) = payload {
      for (name, value, _) in headers.headers where name == "grpc-timeout" && !Self.isValid(value) {
        self.refused = true
        self.onRefuse(String(value))
        let trailers: HPACKHeaders = [
          ":status": "200",
          "content-type": "application/grpc",
          "grpc-status": "3",
          "grpc-message": "malformed grpc-timeout header",
        ]
        context.writeAndFlush(
          Self.wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))),
          promise: nil
        )
        return
      }
      // Only the first HEADERS frame of a stream carries grpc-timeout.
      context.fireChannelRead(data)
      context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
      return
    }
    context.fireChannelRead(data)
  }

  /// Whether `value` is a well-formed `grpc-timeout`: 1 to 8 ASCII digits, then one unit.
  static func isValid<S: StringProtocol>(_ value: S) -> Bool {
    let utf8 = Array(value.utf8)
    guard utf8.count >= 2, utf8.count <= 9 else { return false }
    guard let unit = utf8.last, "HMSmun".utf8.contains(unit) else { return false }
    return utf8.dropLast().allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
  }
}
