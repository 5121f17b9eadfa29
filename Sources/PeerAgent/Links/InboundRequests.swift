internal import ContactProto
private import Synchronization

/// Handles the requests arriving on one stream (`sendStatus` on a listener, `getTask` on a
/// dialer) and hands each reply to `reply`, which writes it on the answering stream.
///
/// Requests with an id are handled concurrently (up to ``concurrencyLimit`` at once; the reader
/// waits beyond it, so HTTP/2 flow control slows the sender) and answered as they finish: a slow
/// request does not hold up the ones behind it, nor the heartbeats. Requests without an id come
/// from older peers that match replies in order, so they are handled one at a time, in order.
struct InboundRequests: Sendable {
  static let concurrencyLimit = 256

  let peer: Peer
  let identity: PeerIdentity
  let link: LinkKind
  let reply: @Sendable (Contact_Result) -> Void
  private let limit = ConcurrencyLimit(Self.concurrencyLimit)

  init(peer: Peer, identity: PeerIdentity, link: LinkKind, reply: @escaping @Sendable (Contact_Result) -> Void) {
    self.peer = peer
    self.identity = identity
    self.link = link
    self.reply = reply
  }

  /// Takes one message off the stream.
  func receive(
    id: String,
    text: String,
    isHeartbeat: Bool,
    in group: inout ThrowingDiscardingTaskGroup<any Error>
  ) async {
    if isHeartbeat {
      var answer = Contact_Result()
      answer.heartbeat = true
      self.reply(answer)
      return
    }
    let request = IncomingRequest(id: id, text: text, from: self.identity, link: self.link)
    if id.isEmpty {
      await self.peer.handle(request) { self.answer($0) }
      return
    }
    await self.limit.acquire()
    group.addTask {
      defer { self.limit.release() }
      await self.peer.handle(request) { self.answer($0) }
    }
  }

  /// Writes a reply — unless its handler was cancelled: that is no answer, and the sender,
  /// still waiting, resends the request on its next link, where it is handled afresh.
  private func answer(_ reply: ReplyBody) {
    guard !reply.wasCancelled else { return }
    self.reply(Contact_Result(reply))
  }
}

/// At most `limit` holders at once; ``acquire()`` waits for a free place.
final class ConcurrencyLimit: Sendable {
  private struct State {
    var available: Int
    var waiters: [CheckedContinuation<Void, Never>] = []
    var head = 0
  }

  private let state: Mutex<State>

  init(_ limit: Int) {
    self.state = Mutex(State(available: limit))
  }

  func acquire() async {
    let acquired = self.state.withLock { state in
      guard state.available > 0 else { return false }
      state.available -= 1
      return true
    }
    if acquired { return }
    await withCheckedContinuation { continuation in
      let now = self.state.withLock { state in
        if state.available > 0 {
          state.available -= 1
          return true
        }
        state.waiters.append(continuation)
        return false
      }
      if now { continuation.resume() }
    }
  }

  func release() {
    let next: CheckedContinuation<Void, Never>? = self.state.withLock { state in
      if state.head < state.waiters.count {
        let waiter = state.waiters[state.head]
        state.head += 1
        if state.head == state.waiters.count {
          state.waiters.removeAll(keepingCapacity: true)
          state.head = 0
        }
        return waiter  // the place passes straight to it
      }
      state.available += 1
      return nil
    }
    next?.resume()
  }
}
