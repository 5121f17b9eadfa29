internal import ContactProto
internal import GRPCCore

// The wire mapping, in one place: the `Contact` messages and stream metadata ⇄ the library's
// types, both directions. Nothing else in the library builds or reads a `Contact_` message's
// fields (except the heartbeat's own answer, which ``Heartbeat`` owns).

/// What a PeerAgent peer announces in the metadata of every long-lived stream it opens or
/// answers: whether it heartbeats, and the largest message it accepts. Older peers announce
/// nothing.
struct Announcement: Sendable, Hashable {
  /// The metadata key of the largest message accepted (value: bytes), so that a sender fails a
  /// request above it instead of writing it (the remote would reset the whole stream).
  static let maximumMessageBytesKey = "peer-agent-max-message-bytes"
  /// The metadata key of the peer's mode (`single` or `dual`), so that two peers started in
  /// different modes say so instead of half working.
  static let modeKey = "peer-agent-mode"

  /// Whether the peer sends and answers heartbeats.
  var heartbeats: Bool
  /// The largest message the peer accepts, if it said.
  var maximumMessageBytes: Int?
  /// The peer's mode, if it said.
  var mode: Mode?

  /// What the other side announced in `metadata`.
  init(_ metadata: Metadata) {
    self.heartbeats = Heartbeat.isAnnounced(in: metadata)
    self.maximumMessageBytes = metadata[stringValues: Self.maximumMessageBytesKey]
      .first(where: { _ in true })
      .flatMap { Int($0) }
    self.mode = metadata[stringValues: Self.modeKey].first(where: { _ in true }).flatMap { Mode(rawValue: $0) }
  }

  /// The metadata announcing `heartbeat` (if any) and `maximumMessageBytes`.
  static func metadata(heartbeat: Heartbeat?, maximumMessageBytes: Int, mode: Mode) -> Metadata {
    var metadata = Metadata()
    heartbeat?.announce(in: &metadata)
    metadata.addString("\(maximumMessageBytes)", forKey: Self.maximumMessageBytesKey)
    metadata.addString(mode.rawValue, forKey: Self.modeKey)
    return metadata
  }
}

/// Encoded sizes of the `Contact` messages, without encoding them.
enum WireSize {
  /// A request (`ClientMsg` or `ServerMsg`: the text in field 1, the id in field 2).
  static func request(id: String, text: String) -> Int {
    self.stringField(text.utf8.count) + self.stringField(id.utf8.count)
  }

  /// A string field of `length` bytes: absent when empty (proto3), else tag, length, bytes.
  private static func stringField(_ length: Int) -> Int {
    guard length > 0 else { return 0 }
    var value = UInt64(length)
    var varint = 1
    while value >= 0x80 {
      value >>= 7
      varint += 1
    }
    return 1 + varint + length
  }
}

/// One message arriving on an inbound stream (`sendStatus` on a listener, `getTask` on a
/// dialer), whichever message type carried it.
struct InboundMessage: Sendable {
  var id: String
  var text: String
  var isHeartbeat: Bool
  var traceContext: [String: String] = [:]
}

extension Contact_ClientMsg {
  /// A request (or heartbeat) on `sendStatus`.
  init(_ outgoing: Link.Outgoing) {
    self.init()
    self.msg = outgoing.text
    self.id = outgoing.id
    self.heartbeat = outgoing.isHeartbeat
    self.traceContext = outgoing.traceContext
  }

  /// The request as it arrived.
  var inbound: InboundMessage {
    InboundMessage(id: self.id, text: self.msg, isHeartbeat: self.heartbeat, traceContext: self.traceContext)
  }
}

extension Contact_ServerMsg {
  /// A request (or heartbeat) pushed down `getTask`.
  init(_ outgoing: Link.Outgoing) {
    self.init()
    self.task = outgoing.text
    self.id = outgoing.id
    self.heartbeat = outgoing.isHeartbeat
    self.traceContext = outgoing.traceContext
  }

  /// The request as it arrived.
  var inbound: InboundMessage {
    InboundMessage(id: self.id, text: self.task, isHeartbeat: self.heartbeat, traceContext: self.traceContext)
  }
}

extension Contact_Result {
  /// A reply on `sendStatus`'s response stream or on `tellResult`.
  init(_ answer: Answer) {
    self.init()
    self.id = answer.id
    self.ret = answer.text
    if let error = answer.error { self.error = error }
    if let code = answer.code { self.code = code }
  }

  /// The answer to a heartbeat: written by PeerAgent, never by the handler.
  static var heartbeatAnswer: Self {
    var answer = Self()
    answer.heartbeat = true
    return answer
  }

  /// The reply as it arrived (who sent it is the stream's to say); `nil` for a heartbeat's
  /// answer.
  var reply: Answer? {
    self.heartbeat ? nil : self.answer
  }

  /// The reply as it arrived (who sent it is the stream's to say).
  var answer: Answer {
    Answer(
      id: self.id,
      text: self.ret,
      error: self.error.isEmpty ? nil : self.error,
      code: self.code.isEmpty ? nil : self.code
    )
  }
}
