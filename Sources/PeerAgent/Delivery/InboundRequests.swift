internal import ContactProto
private import Synchronization

/// Handles the requests arriving on one stream (`sendStatus` on a listener, `getTask` on a
/// dialer) and hands each reply to `reply`, which queues it for the answering stream.
///
/// Requests with an id are handled concurrently and answered as they finish: a slow request
/// does not hold up the ones behind it, nor the heartbeats. Requests without an id come from
/// older peers that match replies in order, so they are handled one at a time, in order.
///
/// Every message holds a place in the stream's ``ReplyBudget`` from the moment it is read
/// until its reply is written (``ReplyBudget/written(_:)``): a remote that stops reading its
/// replies stops being read, and HTTP/2 flow control slows it, while every other stream and
/// link goes on.
struct InboundRequests: Sendable {
  let inbox: Inbox
  let identity: PeerIdentity
  let link: LinkKind
  let budget: ReplyBudget
  let reply: @Sendable (Contact_Result) -> Void

  init(
    context: LinkContext,
    identity: PeerIdentity,
    link: LinkKind,
    budget: ReplyBudget,
    reply: @escaping @Sendable (Contact_Result) -> Void
  ) {
    self.inbox = context.inbox
    self.identity = identity
    self.link = link
    self.budget = budget
    self.reply = reply
  }

  /// Takes one message off the stream: answers a heartbeat, hands a request to the inbox.
  /// Waits first for a place in the budget. Throws when cancelled while it waits.
  func receive(_ message: InboundMessage, in group: inout ThrowingDiscardingTaskGroup<any Error>) async throws {
    try await self.budget.acquire()
    if message.isHeartbeat {
      self.send(Heartbeat.answer)
      return
    }
    let request = IncomingRequest(
      id: message.id,
      text: message.text,
      from: self.identity,
      link: self.link,
      traceContext: message.traceContext
    )
    if let problem = RequestID.problem(with: message.id) {
      // Refused where it enters: never written to a store (PostgreSQL refuses a NUL in text,
      // and one such write failed the whole batch it was in), never handled.
      self.send(Contact_Result(.refusal(of: message.id, .invalidRequest, "request refused: \(problem)")))
      return
    }
    if message.id.isEmpty {
      await self.answer(request)
      return
    }
    group.addTask {
      await self.answer(request)
    }
  }

  /// Handles `request` and queues its reply — unless its handler was cancelled: that is no
  /// answer, and the sender, still waiting, resends the request on its next link, where it is
  /// handled afresh.
  private func answer(_ request: IncomingRequest) async {
    guard let answer = await self.inbox.receive(request) else {
      self.budget.release(count: 1, bytes: 0)
      return
    }
    self.send(Contact_Result(answer))
  }

  private func send(_ result: Contact_Result) {
    self.budget.charge(ReplyBudget.cost(of: result))
    self.reply(result)
  }
}

/// The replies of one stream that are being handled or waiting to be written: at most
/// `count` of them, and reading stops while their bytes are over `bytes`.
///
/// ``acquire()`` takes a place before a message is read; a reply's bytes are charged when it is
/// queued, and its place and bytes are given back once it is written. One reply larger than
/// `bytes` still goes through, alone.
final class ReplyBudget: Sendable {
  private struct State {
    var held = 0
    var bytes = 0
    var waiters = WaiterQueue<Void>()
  }

  private let state = Mutex(State())
  private let count: Int
  private let bytes: Int

  init(count: Int, bytes: Int) {
    self.count = max(1, count)
    self.bytes = max(1, bytes)
  }

  convenience init(_ limits: Peer.Config.Limits) {
    self.init(count: limits.repliesPerStream, bytes: limits.replyBytesPerStream)
  }

  /// Places held now (tests).
  var held: Int { self.state.withLock { $0.held } }

  /// Takes a place, waiting while all are held or the queued bytes are over the limit.
  ///
  /// - Throws: `CancellationError` if the task is cancelled while it waits.
  func acquire() async throws {
    let acquired = self.state.withLock { state in self.take(&state) }
    if acquired { return }
    try await WaiterQueue<Void>.suspend { key, continuation in
      self.state.withLock { state in
        if self.take(&state) { return .success(()) }
        state.waiters.append(key, continuation)
        return nil
      }
    } onCancel: { key in
      self.state.withLock { $0.waiters.remove(key) }
    }
  }

  private func take(_ state: inout State) -> Bool {
    guard state.held < self.count, state.bytes < self.bytes, state.waiters.isEmpty else { return false }
    state.held += 1
    return true
  }

  /// Charges the bytes of a reply just queued.
  func charge(_ bytes: Int) {
    self.state.withLock { $0.bytes += bytes }
  }

  /// Gives back the places and bytes of replies written.
  func written(_ results: [Contact_Result]) {
    self.release(count: results.count, bytes: results.reduce(0) { $0 + Self.cost(of: $1) })
  }

  /// Gives back `count` places and `bytes`, and lets waiting readers go on while there is room.
  func release(count: Int, bytes: Int) {
    let woken: [WaiterQueue<Void>.Continuation] = self.state.withLock { state in
      state.held -= count
      state.bytes -= bytes
      var woken: [WaiterQueue<Void>.Continuation] = []
      while state.held < self.count, state.bytes < self.bytes, let next = state.waiters.popFirst() {
        state.held += 1
        woken.append(next)
      }
      return woken
    }
    for continuation in woken { continuation.resume() }
  }

  /// What a reply counts for: its strings, as written.
  static func cost(of result: Contact_Result) -> Int {
    16 + result.id.utf8.count + result.ret.utf8.count + result.error.utf8.count + result.code.utf8.count
  }
}

/// What a request id may be: the sender's to choose (PeerAgent writes 32 hex digits), within
/// bounds every store takes — at most ``maximumLength`` bytes of printable ASCII.
enum RequestID {
  static let maximumLength = 128

  /// Why `id` is not a usable request id, or `nil` when it is (empty: an older peer's, matched
  /// in order).
  static func problem(with id: String) -> String? {
    let bytes = id.utf8
    if bytes.count > Self.maximumLength {
      return "its id is \(bytes.count) bytes long; at most \(Self.maximumLength) are accepted"
    }
    if !bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) {
      return "its id holds characters other than printable ASCII"
    }
    return nil
  }
}
