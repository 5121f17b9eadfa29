import Synchronization
import Logging
import Testing

@testable import PeerAgent

/// The outbox on its own, on the in-memory store — by the same path as the durable one.
@Suite("Outbox: windows, deadlines, replies, and the store kept in step")
struct OutboxTests {
  static func submit(_ id: String, to peer: String = "edge", _ outbox: Outbox, in seconds: Int64 = 30) async throws -> Outbox.Accepted {
    try await outbox.submit(id: id, to: peer, text: "text \(id)", deadline: .now.advanced(by: .seconds(seconds)))
  }

  @Test("The in-memory store records every request, its answer until taken, and forgets it once settled")
  func storeInStep() async throws {
    let store = InMemoryDeliveryStore(capacity: 10)
    let outbox = Outbox(store: store, window: 4)
    let accepted = try await Self.submit("r-1", outbox)
    #expect(try store.unansweredOutgoing().map(\.id) == ["r-1"])
    #expect(outbox.resolve(Answer(id: "r-1", text: "ok", from: .verified("edge"))) == .resolved)
    #expect(try store.unansweredOutgoing().first?.answer?.text == "ok", "kept until the caller takes it")
    let reply = try await accepted.delivery.reply()
    #expect(reply.text == "ok")
    #expect(reply.from == .verified("edge"))
    #expect(try store.unansweredOutgoing().isEmpty)
    #expect(outbox.resolve(Answer(id: "r-1", text: "again", from: .verified("edge"))) == .notWaiting, "a repeated reply matches nothing")
  }

  @Test("A reply from anyone but the addressee is dropped and counted; the request still waits for its addressee")
  func repliesOnlyFromTheAddressee() async throws {
    let outbox = Outbox(store: InMemoryDeliveryStore(capacity: 10), window: 4)
    let accepted = try await Self.submit("r-1", outbox)
    #expect(outbox.resolve(Answer(id: "r-1", text: "forged", from: .verified("edge2"))) == .misdirected(addressee: "edge"))
    #expect(outbox.resolve(Answer(id: "r-1", text: "forged", from: .unverified(address: "edge"))) == .resolved, "in plaintext the name is the address")
    #expect(outbox.misdirected == 1)
    #expect(try await accepted.delivery.reply().text == "forged")
    let second = try await Self.submit("r-2", outbox)
    outbox.resolve(Answer(id: "r-2", text: "forged", from: .verified("hub")))
    outbox.resolve(Answer(id: "r-2", text: "real", from: .verified("edge")))
    #expect(try await second.delivery.reply().text == "real")
    #expect(outbox.misdirected == 2)
  }

  @Test("A full window makes the next caller wait until a reply frees room, first come first served")
  func window() async throws {
    let outbox = Outbox(store: InMemoryDeliveryStore(capacity: 10), window: 1)
    _ = try await Self.submit("first", outbox)
    let second = Task { try await Self.submit("second", outbox) }
    for _ in 0 ..< 100 { await Task.yield() }
    #expect(outbox.count(for: "edge") == 1, "the second waits")
    outbox.resolve(Answer(id: "first", text: "", from: .verified("edge")))
    #expect(try await second.value.outgoing.id == "second")
    // Another remote has its own window.
    _ = try await Self.submit("elsewhere", to: "hub", outbox)
  }

  @Test("At the deadline: unknownPeer if never written to an unconnected remote, else timedOut; waiters for room fail too")
  func expire() async throws {
    let outbox = Outbox(store: InMemoryDeliveryStore(capacity: 10), window: 1)
    let never = try await Self.submit("never", to: "ghost", outbox, in: 0)
    let written = try await Self.submit("written", outbox, in: 0)
    #expect(outbox.willWrite(id: "written"))
    let waiting = Task { try await Self.submit("waiting", outbox, in: 0) }
    for _ in 0 ..< 100 { await Task.yield() }
    outbox.expire(now: .now.advanced(by: .seconds(1)), connected: [])
    await #expect { _ = try await never.delivery.reply() } throws: { ($0 as? PeerAgentError)?.code == .unknownPeer }
    await #expect { _ = try await written.delivery.reply() } throws: { ($0 as? PeerAgentError)?.code == .timedOut }
    // The waiter either got the room freed by the expiry, or expired itself.
    if let late = try? await waiting.value {
      outbox.expire(now: .now.advanced(by: .seconds(1)), connected: ["edge"])
      await #expect { _ = try await late.delivery.reply() } throws: { ($0 as? PeerAgentError)?.code == .timedOut }
    }
    #expect(outbox.count() == 0)
  }

  @Test("pending: what a new link is owed, in submission order, without what was answered")
  func pending() async throws {
    let outbox = Outbox(store: InMemoryDeliveryStore(capacity: 10), window: 8)
    for id in ["a", "b", "c"] { _ = try await Self.submit(id, outbox) }
    outbox.resolve(Answer(id: "b", text: "", from: .verified("edge")))
    let (owed, through) = outbox.pending(for: "edge")
    #expect(owed.map(\.id) == ["a", "c"])
    #expect(through == 3)
    #expect(outbox.willWrite(id: "a"))
    #expect(outbox.willWrite(id: "a"))
    #expect(outbox.resends == 1, "a second write is a resend")
    #expect(!outbox.willWrite(id: "b"), "answered: not written")
  }

  @Test("close fails every delivery and every caller waiting for room")
  func close() async throws {
    let outbox = Outbox(store: InMemoryDeliveryStore(capacity: 10), window: 1)
    let accepted = try await Self.submit("a", outbox)
    let waiting = Task { try await Self.submit("b", outbox) }
    for _ in 0 ..< 100 { await Task.yield() }
    outbox.close(with: PeerAgentError(code: .shuttingDown, message: "test"))
    await #expect { _ = try await accepted.delivery.reply() } throws: { ($0 as? PeerAgentError)?.code == .shuttingDown }
    await #expect { _ = try await waiting.value } throws: { ($0 as? PeerAgentError)?.code == .shuttingDown }
  }
}

/// The inbox on its own: exactly-once handling by id, on the in-memory store.
@Suite("Inbox: each request handled once, repeats answered from the window")
struct InboxTests {
  static func inbox(handler: @escaping Peer.Handler) -> Inbox {
    Inbox(
      store: InMemoryDeliveryStore(capacity: 100),
      retention: .seconds(60),
      bounds: WindowBounds(count: 100),
      logger: Logger(label: "test"),
      handler: handler
    )
  }

  static func request(_ id: String, from name: String = "hub") -> IncomingRequest {
    IncomingRequest(id: id, text: "text \(id)", from: .verified(name), link: .sendStatus)
  }

  @Test("A repeat gets the recorded reply without the handler; another sender's same id is another request")
  func repeats() async throws {
    let calls = Counter()
    let inbox = Self.inbox { request in
      calls.increment()
      return "handled \(request.text)"
    }
    #expect(await inbox.receive(Self.request("1"))?.text == "handled text 1")
    #expect(await inbox.receive(Self.request("1"))?.text == "handled text 1")
    #expect(await inbox.receive(Self.request("1", from: "edge"))?.text == "handled text 1")
    #expect(calls.value == 2)
    #expect(inbox.repeats == 1)
    // Without an id (older peers): handled every time.
    _ = await inbox.receive(Self.request(""))
    _ = await inbox.receive(Self.request(""))
    #expect(calls.value == 4)
  }

  @Test("A repeat that arrives while the first copy runs waits for its reply")
  func concurrentRepeat() async throws {
    let gate = AsyncGate()
    let calls = Counter()
    let inbox = Self.inbox { _ in
      calls.increment()
      await gate.wait()
      return "once"
    }
    async let first = inbox.receive(Self.request("1"))
    async let second = inbox.receive(Self.request("1"))
    for _ in 0 ..< 200 { await Task.yield() }
    gate.open()
    let replies = await [first, second]
    #expect(replies.map { $0?.text } == ["once", "once"])
    #expect(calls.value == 1)
  }

  @Test("A handler that throws answers with its error; a cancelled one answers nothing, and its repeat is handled afresh")
  func failures() async throws {
    struct Refused: Error, CustomStringConvertible {
      var description: String { "refused" }
    }
    let inbox = Self.inbox { request in
      if request.text.hasSuffix("fail") { throw Refused() }
      if request.id == "cancel", !Task.isCancelled { throw CancellationError() }
      return "ok"
    }
    let failed = await inbox.receive(IncomingRequest(id: "f", text: "fail", from: .verified("hub"), link: .getTask))
    #expect(failed?.error == "refused")
    #expect(await inbox.receive(Self.request("cancel")) == nil)
    #expect(inbox.inFlight == 0)
  }
}

/// A counter shared by a handler and its test.
final class Counter: Sendable {
  private let count = Synchronization.Atomic<Int>(0)
  func increment() { self.count.add(1, ordering: .relaxed) }
  var value: Int { self.count.load(ordering: .relaxed) }
}

/// A gate that handlers wait at until the test opens it.
final class AsyncGate: Sendable {
  private let signal = Signal()
  func wait() async { await self.signal.wait() }
  func open() { self.signal.set() }
}
