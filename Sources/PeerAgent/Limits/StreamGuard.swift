internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// Guards one inbound HTTP/2 stream of the listener, first in its pipeline:
///
/// - a stream beyond the connection's advertised limit (``ConnectionGuard``) is reset with
///   `REFUSED_STREAM` before anything reads it, and the connection's other streams go on;
/// - a gRPC message cut short — its length prefix promises more than arrives before the
///   remote ends the stream — fails with `INTERNAL`. grpc-swift-nio-transport 2.9.2 drops the
///   partial message and ends such a call with `OK`, as if nothing had been sent;
/// - a gRPC message whose length prefix is over the peer's maximum fails with
///   `RESOURCE_EXHAUSTED` as soon as its prefix arrives, before its body is read.
///   grpc-swift-nio-transport resets such a stream with `CANCEL` and no status.
final class StreamGuard: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias InboundOut = HTTP2Frame.FramePayload
  typealias OutboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private enum State {
    /// Before the request's HEADERS.
    case idle
    /// Counted against the connection's limit, being read.
    case open
    /// Refused or failed here: nothing more is read or written.
    case ended
  }

  private var state = State.idle
  private weak var connection: ConnectionGuard?
  private var counted = false
  private var sentHeaders = false
  private var framing = GRPCFraming()
  private let maximumMessageBytes: Int
  private let onRefused: @Sendable (_ reason: String) -> Void

  init(maximumMessageBytes: Int, onRefused: @escaping @Sendable (_ reason: String) -> Void) {
    self.maximumMessageBytes = maximumMessageBytes
    self.onRefused = onRefused
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.connection = try? context.channel.parent?.pipeline.syncOperations.handler(type: ConnectionGuard.self)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let payload = Self.unwrapInboundIn(data)
    switch self.state {
    case .ended:
      return
    case .idle:
      if let connection = self.connection {
        guard connection.streamOpened() else {
          self.state = .ended
          context.writeAndFlush(Self.wrapOutboundOut(.rstStream(.refusedStream)), promise: nil)
          return
        }
        self.counted = true
      }
      self.state = .open
    case .open:
      break
    }
    switch payload {
    case .data(let data):
      if case .byteBuffer(let buffer) = data.data {
        self.framing.consume(buffer.readableBytes, from: buffer)
      }
      if let length = self.framing.largestLength, length > self.maximumMessageBytes {
        self.fail(
          context,
          status: 8,
          message: "a request message of \(length) bytes is over this peer's limit of \(self.maximumMessageBytes)",
          reset: !data.endStream
        )
        return
      }
      if data.endStream, self.framing.isMidMessage {
        self.fail(context, status: 13, message: "the request stream ended in the middle of a message", reset: false)
        return
      }
    case .headers(let headers) where headers.endStream:
      if self.framing.isMidMessage {
        self.fail(context, status: 13, message: "the request stream ended in the middle of a message", reset: false)
        return
      }
    default:
      break
    }
    context.fireChannelRead(data)
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if case .ended = self.state {
      promise?.fail(ChannelError.ioOnClosedChannel)
      return
    }
    if case .headers = Self.unwrapOutboundIn(data) { self.sentHeaders = true }
    context.write(data, promise: promise)
  }

  func channelInactive(context: ChannelHandlerContext) {
    if self.counted {
      self.counted = false
      self.connection?.streamClosed()
    }
    context.fireChannelInactive()
  }

  /// Ends the call with `status` and `message`; with `reset`, the remote has not ended its
  /// side, and `RST_STREAM(NO_ERROR)` after the trailers tells it to stop sending (as gRPC
  /// servers do when they answer before the request is complete).
  private func fail(_ context: ChannelHandlerContext, status: Int, message: String, reset: Bool) {
    self.state = .ended
    self.onRefused(message)
    var trailers: HPACKHeaders = self.sentHeaders ? [:] : [":status": "200", "content-type": "application/grpc"]
    trailers.add(name: "grpc-status", value: "\(status)")
    trailers.add(name: "grpc-message", value: message)
    context.write(Self.wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
    if reset {
      context.write(Self.wrapOutboundOut(.rstStream(.noError)), promise: nil)
    }
    context.flush()
  }
}

/// Follows gRPC's length-prefixed framing over a stream's DATA bytes: a flag byte and a
/// four-byte big-endian length, then that many bytes, again and again.
struct GRPCFraming {
  /// The prefix bytes read of the current message (0 to 5).
  private var prefix: [UInt8] = []
  /// Bytes of the current message still to come, once its prefix is read.
  private var remaining = 0
  /// The largest length any prefix announced so far.
  private(set) var largestLength: Int?

  /// Whether the bytes so far stop inside a message (its prefix, or its body).
  var isMidMessage: Bool { !self.prefix.isEmpty || self.remaining > 0 }

  mutating func consume(_ count: Int, from buffer: ByteBuffer) {
    var index = buffer.readerIndex
    let end = buffer.readerIndex + count
    while index < end {
      if self.remaining > 0 {
        let step = min(self.remaining, end - index)
        self.remaining -= step
        index += step
        continue
      }
      self.prefix.append(buffer.getInteger(at: index, as: UInt8.self)!)
      index += 1
      if self.prefix.count == 5 {
        self.remaining = Int(self.prefix[1]) << 24 | Int(self.prefix[2]) << 16 | Int(self.prefix[3]) << 8 | Int(self.prefix[4])
        self.largestLength = max(self.largestLength ?? 0, self.remaining)
        self.prefix = []
      }
    }
  }
}
