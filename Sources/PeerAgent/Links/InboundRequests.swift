internal import ContactProto

/// Handles the requests arriving on one stream (`sendStatus` on a listener, `getTask` on a
/// dialer) and hands each reply to `reply`, which writes it on the answering stream.
///
/// Requests with an id are handled concurrently (up to ``concurrencyLimit`` at once; the reader
/// waits beyond it, so HTTP/2 flow control slows the sender) and answered as they finish: a slow
/// request does not hold up the ones behind it, nor the heartbeats. Requests without an id come
/// from older peers that match replies in order, so they are handled one at a time, in order.
struct InboundRequests: Sendable {
  /// The most requests of one stream handled at once.
  static let concurrencyLimit = 256

  let inbox: Inbox
  let identity: PeerIdentity
  let link: LinkKind
  let reply: @Sendable (Contact_Result) -> Void
  private let limit = ConcurrencyLimit(Self.concurrencyLimit)

  init(context: LinkContext, identity: PeerIdentity, link: LinkKind, reply: @escaping @Sendable (Contact_Result) -> Void) {
    self.inbox = context.inbox
    self.identity = identity
    self.link = link
    self.reply = reply
  }

  /// Takes one message off the stream: answers a heartbeat, hands a request to the inbox.
  /// Throws when cancelled while waiting for a place under the limit.
  func receive(_ message: InboundMessage, in group: inout ThrowingDiscardingTaskGroup<any Error>) async throws {
    if message.isHeartbeat {
      self.reply(Heartbeat.answer)
      return
    }
    let request = IncomingRequest(id: message.id, text: message.text, from: self.identity, link: self.link)
    if message.id.isEmpty {
      await self.answer(request)
      return
    }
    try await self.limit.acquire()
    group.addTask {
      defer { self.limit.release() }
      await self.answer(request)
    }
  }

  /// Handles `request` and writes its reply — unless its handler was cancelled: that is no
  /// answer, and the sender, still waiting, resends the request on its next link, where it is
  /// handled afresh.
  private func answer(_ request: IncomingRequest) async {
    guard let answer = await self.inbox.receive(request) else { return }
    self.reply(Contact_Result(answer))
  }
}
