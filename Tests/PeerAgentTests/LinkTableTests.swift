import Logging
import Synchronization
import Testing

@testable import PeerAgent

/// The link table's transitions, on the state machine alone and through the table with a real
/// outbox: attach, replace, detach, drain (close), reconnect.
@Suite("Link table: one owner of links, states and routing")
struct LinkTableTests {
  static func link(_ name: String, _ kind: LinkKind = .sendStatus) -> Link {
    Link(identity: .verified(name), kind: kind, window: 8)
  }

  // MARK: - The state machine

  @Test("attach: the first link of a remote is current, the remote ready and the only peer")
  func attachFirst() throws {
    var state = LinkTable.StateMachine()
    let edge = Self.link("edge")
    guard case .attach(let replaced, let waiters, let linkState) = state.attach(edge) else {
      Issue.record("refused")
      return
    }
    #expect(replaced == nil)
    #expect(waiters.isEmpty)
    #expect(linkState == .ready)
    #expect(state.connected == [.verified("edge")])
    #expect(state.remotes["edge"]?.latest === edge)
    guard case .found(let only) = state.onlyPeer() else {
      Issue.record("no only peer")
      return
    }
    #expect(only == .verified("edge"))
  }

  @Test("replace: a newer link to the same remote replaces the older; the older's detach is ignored")
  func replace() {
    var state = LinkTable.StateMachine()
    let first = Self.link("edge")
    let second = Self.link("edge")
    _ = state.attach(first)
    guard case .attach(let replaced, _, let linkState) = state.attach(second) else {
      Issue.record("refused")
      return
    }
    #expect(replaced === first)
    #expect(linkState == nil, "still ready: no new state to report")
    guard case .ignore = state.detach(first) else {
      Issue.record("the replaced link's end disconnected the remote")
      return
    }
    #expect(state.remotes["edge"]?.current === second)
    #expect(state.connectedCount == 1)
  }

  @Test("detach: the remote is down, no longer connected, and its latest link is kept for late replies")
  func detach() {
    var state = LinkTable.StateMachine()
    let edge = Self.link("edge", .getTask)
    _ = state.attach(edge)
    guard case .detach(let linkState) = state.detach(edge) else {
      Issue.record("ignored")
      return
    }
    #expect(linkState == .down)
    #expect(state.connected.isEmpty)
    #expect(state.remotes["edge"]?.latest === edge)
    guard case .wait = state.onlyPeer() else {
      Issue.record("an only peer with none connected")
      return
    }
    guard case .ignore = state.detach(edge) else {
      Issue.record("a second detach reported again")
      return
    }
  }

  @Test("reconnect: a new link after a detach is ready again and owed every request afresh")
  func reconnect() {
    var state = LinkTable.StateMachine()
    let old = Self.link("edge")
    _ = state.attach(old)
    state.replayed(old, through: 7)
    #expect(state.link(for: "edge", sequence: 7) == nil, "written at attach: not again")
    #expect(state.link(for: "edge", sequence: 8) === old)
    _ = state.detach(old)
    #expect(state.link(for: "edge", sequence: 9) == nil, "not connected")
    let new = Self.link("edge")
    guard case .attach(nil, _, .ready) = state.attach(new) else {
      Issue.record("not ready again")
      return
    }
    #expect(state.link(for: "edge", sequence: 1) === new, "nothing replayed on the new link yet")
    state.replayed(old, through: 100)
    #expect(state.link(for: "edge", sequence: 50) === new, "a replaced link's replay does not count for the new one")
  }

  @Test("drain: close ends every current link, marks them down, and refuses links from then on")
  func close() {
    var state = LinkTable.StateMachine()
    let edge = Self.link("edge")
    let hub = Self.link("hub")
    _ = state.attach(edge)
    _ = state.attach(hub)
    guard case .ambiguous(let names) = state.onlyPeer() else {
      Issue.record("two peers are not ambiguous")
      return
    }
    #expect(names == ["edge", "hub"])
    let (links, waiters) = state.close(with: CancellationError())
    #expect(Set(links.map(\.identity.name)) == ["edge", "hub"])
    #expect(waiters.isEmpty)
    #expect(state.states == ["edge": .down, "hub": .down])
    #expect(state.connected.isEmpty)
    guard case .refuse = state.attach(Self.link("late")) else {
      Issue.record("a closed table took a link")
      return
    }
    guard case .closed = state.onlyPeer() else {
      Issue.record("a closed table waits for a peer")
      return
    }
  }

  @Test("States: a dialer's connecting is reported once, then ready on attach")
  func states() {
    var state = LinkTable.StateMachine()
    let first = state.setState(.connecting, of: "edge")
    let again = state.setState(.connecting, of: "edge")
    #expect(first)
    #expect(!again)
    guard case .attach(_, _, .ready) = state.attach(Self.link("edge")) else {
      Issue.record("not ready")
      return
    }
    let degraded = state.setState(.degraded, of: "edge")
    #expect(degraded)
    #expect(state.states == ["edge": .degraded])
  }

  // MARK: - The table, with a real outbox

  static func table() -> (LinkTable, Outbox, EventHub) {
    let outbox = Outbox(store: InMemoryDeliveryStore(capacity: 100), window: 8)
    let events = EventHub()
    return (LinkTable(outbox: outbox, events: events, logger: Logger(label: "test")), outbox, events)
  }

  static func submit(_ text: String, to peer: String, _ outbox: Outbox) async throws -> Outbox.Accepted {
    try await outbox.submit(id: text, to: peer, text: text, deadline: .now.advanced(by: .seconds(30)))
  }

  @Test("A new link is written what its remote is owed, in order; a request accepted meanwhile is written once")
  func replayOnAttach() async throws {
    let (table, outbox, _) = Self.table()
    let queued = try await Self.submit("a", to: "edge", outbox)
    table.write(queued)  // not connected: the next link writes it
    let raced = try await Self.submit("b", to: "edge", outbox)  // accepted before the link attaches…
    let link = Self.link("edge")
    table.attach(link)
    table.write(raced)  // …and routed after: already written at attach
    let after = try await Self.submit("c", to: "edge", outbox)
    table.write(after)
    link.finishOutgoing()
    var written: [String] = []
    while let batch = await link.outgoing.next() { written += batch.map(\.id) }
    #expect(written == ["a", "b", "c"])
  }

  @Test("A detached link's requests stay owed and are written again on the next link")
  func detachKeepsRequests() async throws {
    let (table, outbox, events) = Self.table()
    let first = Self.link("edge")
    table.attach(first)
    table.write(try await Self.submit("a", to: "edge", outbox))
    table.detach(first, reason: "test")
    #expect(!first.enqueue(.heartbeat), "a detached link is ended")
    #expect(table.connected.isEmpty)
    #expect(outbox.count(for: "edge") == 1)

    let second = Self.link("edge")
    table.attach(second)
    second.finishOutgoing()
    #expect(await second.outgoing.next()?.map(\.id) == ["a"])
    events.finish()
    var seen: [PeerEvent] = []
    for await event in events.stream { seen.append(event) }
    #expect(
      seen == [
        .connected(peer: .verified("edge"), link: .sendStatus),
        .linkState(peer: "edge", state: .ready, reason: nil),
        .disconnected(peer: .verified("edge"), link: .sendStatus, reason: "test"),
        .linkState(peer: "edge", state: .down, reason: "test"),
        .connected(peer: .verified("edge"), link: .sendStatus),
        .linkState(peer: "edge", state: .ready, reason: nil),
      ]
    )
  }

  @Test("A placeholder's requests move to the remote's name when its link attaches")
  func placeholder() async throws {
    let (table, outbox, _) = Self.table()
    _ = try await Self.submit("early", to: "127.0.0.1:7000", outbox)
    let link = Self.link("hub")
    table.attach(link, queuedAs: "127.0.0.1:7000")
    link.finishOutgoing()
    #expect(await link.outgoing.next()?.map(\.id) == ["early"])
    #expect(outbox.count(for: "hub") == 1)
    #expect(outbox.count(for: "127.0.0.1:7000") == 0)
  }

  @Test("A caller of the only peer waits for one to attach; close fails the callers still waiting")
  func onlyPeerWaiters() async throws {
    let (table, _, _) = Self.table()
    let waiting = Task { try await table.onlyPeer(deadline: .now.advanced(by: .seconds(30))) }
    for _ in 0 ..< 100 { await Task.yield() }
    table.attach(Self.link("edge"))
    #expect(try await waiting.value == .verified("edge"))

    let (closing, _, _) = Self.table()
    let failed = Task { try await closing.onlyPeer(deadline: .now.advanced(by: .seconds(30))) }
    for _ in 0 ..< 100 { await Task.yield() }
    closing.close(with: PeerAgentError(code: .shuttingDown, message: "test"), reason: "shutdown")
    await #expect {
      _ = try await failed.value
    } throws: { error in
      (error as? PeerAgentError)?.code == .shuttingDown
    }
  }

  @Test("A caller of the only peer fails at its deadline, and a cancelled one at once")
  func onlyPeerDeadline() async throws {
    let (table, _, _) = Self.table()
    let expiring = Task { try await table.onlyPeer(deadline: .now) }
    let done = Atomic<Bool>(false)
    Task {
      _ = try? await expiring.value
      done.store(true, ordering: .sequentiallyConsistent)
    }
    // The sweep runs until the caller is failed. Bounded, but generously: on a loaded machine
    // the caller's task may not even have queued within 2 s (a CI run hung here: the sweep had
    // stopped before the waiter came). If it never ends, it is cancelled, and fails the
    // expectation below instead of hanging the suite.
    let giveUp = ContinuousClock.now.advanced(by: .seconds(30))
    while !done.load(ordering: .sequentiallyConsistent), ContinuousClock.now < giveUp {
      table.expireWaiters(now: .now)
      try await Task.sleep(for: .milliseconds(5))
    }
    if !done.load(ordering: .sequentiallyConsistent) { expiring.cancel() }
    await #expect {
      _ = try await expiring.value
    } throws: { error in
      (error as? PeerAgentError)?.code == .notConnected
    }
    let cancelled = Task { try await table.onlyPeer(deadline: .now.advanced(by: .seconds(30))) }
    cancelled.cancel()
    await #expect(throws: CancellationError.self) { _ = try await cancelled.value }
  }
}
