internal import NIOCore
internal import NIOHTTP2
internal import NIOTLS

/// Guards one accepted connection (listener side): its handshake and its first stream must come
/// in time, its streams are counted against the advertised limit, and its place in the
/// ``ConnectionLimiter`` is given back when it closes.
///
/// It sits between TLS (if any) and HTTP/2, and also rewrites `SETTINGS_MAX_CONCURRENT_STREAMS`
/// in the server's first `SETTINGS` frame to ``advertisedStreams``. swift-nio-http2 treats a
/// stream beyond the limit it advertised as a connection error (GOAWAY, every call on the
/// connection lost); PeerAgent asks it for a higher limit, tells the remote the real one, and
/// refuses each stream beyond it alone, with `REFUSED_STREAM` (``StreamGuard``).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = NIOAny
  typealias InboundOut = NIOAny
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  /// The internal limit swift-nio-http2 is given: beyond it a remote is plainly abusive, and
  /// its connection is closed.
  static func internalStreamLimit(advertised: Int) -> Int { max(advertised * 8, advertised + 256) }

  private let limiter: ConnectionLimiter
  private let ticket: ConnectionLimiter.Ticket
  private let advertisedStreams: Int
  private let handshakeTimeout: TimeAmount?
  private let firstStreamTimeout: TimeAmount
  private let report: @Sendable (_ reason: String) -> Void

  private var handshakeTimer: Scheduled<Void>?
  private var firstStreamTimer: Scheduled<Void>?
  private var openStreams = 0
  private var everOpened = false
  private var settings = SettingsRewriter()

  init(
    limiter: ConnectionLimiter,
    ticket: ConnectionLimiter.Ticket,
    limits: Peer.Config.Limits,
    isTLS: Bool,
    report: @escaping @Sendable (_ reason: String) -> Void
  ) {
    self.limiter = limiter
    self.ticket = ticket
    self.advertisedStreams = limits.maximumConcurrentStreams
    self.handshakeTimeout = isTLS ? TimeAmount(limits.handshakeTimeout) : nil
    self.firstStreamTimeout = TimeAmount(limits.firstStreamTimeout)
    self.report = report
    self.settings.maximumConcurrentStreams = UInt32(clamping: limits.maximumConcurrentStreams)
  }

  func handlerAdded(context: ChannelHandlerContext) {
    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    if let timeout = self.handshakeTimeout {
      self.handshakeTimer = context.eventLoop.scheduleTask(in: timeout) {
        let (this, context) = loopBound.value
        this.close(context, reason: "the TLS handshake did not finish within \(timeout.seconds) s")
      }
    }
    let timeout = self.firstStreamTimeout
    self.firstStreamTimer = context.eventLoop.scheduleTask(in: timeout) {
      let (this, context) = loopBound.value
      this.close(context, reason: "no stream was opened within \(timeout.seconds) s")
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.cancelTimers()
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.cancelTimers()
    self.limiter.release(self.ticket)
    context.fireChannelInactive()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
      self.handshakeTimer?.cancel()
      self.handshakeTimer = nil
    }
    context.fireUserInboundEventTriggered(event)
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    guard !self.settings.isDone, case .byteBuffer(var buffer) = Self.unwrapOutboundIn(data) else {
      context.write(data, promise: promise)
      return
    }
    self.settings.rewrite(&buffer)
    context.write(Self.wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
  }

  /// A stream opened: `false` when it is beyond the advertised limit and must be refused.
  func streamOpened() -> Bool {
    guard self.openStreams < self.advertisedStreams else { return false }
    self.openStreams += 1
    if !self.everOpened {
      self.everOpened = true
      self.firstStreamTimer?.cancel()
      self.firstStreamTimer = nil
      self.limiter.established(self.ticket)
    }
    return true
  }

  /// A stream counted by ``streamOpened()`` closed.
  func streamClosed() {
    self.openStreams -= 1
  }

  private func close(_ context: ChannelHandlerContext, reason: String) {
    self.cancelTimers()
    self.report(reason)
    context.close(promise: nil)
  }

  private func cancelTimers() {
    self.handshakeTimer?.cancel()
    self.handshakeTimer = nil
    self.firstStreamTimer?.cancel()
    self.firstStreamTimer = nil
  }
}

extension TimeAmount {
  fileprivate var seconds: String {
    let value = Double(self.nanoseconds) / 1e9
    return value == value.rounded() ? String(Int(value)) : String(value)
  }
}

/// Rewrites the value of `SETTINGS_MAX_CONCURRENT_STREAMS` (0x3) in the first frame a server
/// writes — its connection preface, always a `SETTINGS` frame — byte by byte, wherever the
/// writes split it.
struct SettingsRewriter {
  var maximumConcurrentStreams: UInt32 = 0
  /// Bytes of the first frame seen so far.
  private var offset = 0
  private var header: [UInt8] = []
  private var payloadLength = 0
  private var entry: [UInt8] = []
  private(set) var isDone = false

  /// Rewrites what `buffer` holds of the first frame.
  mutating func rewrite(_ buffer: inout ByteBuffer) {
    var index = buffer.readerIndex
    let end = buffer.writerIndex
    while index < end, !self.isDone {
      let byte = buffer.getInteger(at: index, as: UInt8.self)!
      if self.header.count < 9 {
        self.header.append(byte)
        if self.header.count == 9 {
          self.payloadLength = Int(self.header[0]) << 16 | Int(self.header[1]) << 8 | Int(self.header[2])
          // Not a SETTINGS frame (type 0x4): nothing to rewrite.
          if self.header[3] != 0x4 || self.payloadLength == 0 { self.isDone = true }
        }
      } else {
        let position = self.offset - 9
        let inEntry = position % 6
        if inEntry == 0 { self.entry = [] }
        self.entry.append(byte)
        if inEntry >= 2, self.entry[0] == 0, self.entry[1] == 0x3 {
          let shift = UInt32(8 * (5 - inEntry))
          buffer.setInteger(UInt8(truncatingIfNeeded: self.maximumConcurrentStreams >> shift), at: index)
        }
        if position + 1 >= self.payloadLength { self.isDone = true }
      }
      self.offset += 1
      index += 1
    }
  }
}
