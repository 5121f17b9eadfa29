import Foundation
import Logging
import Synchronization
import Testing

@testable import PeerAgent

/// A request refused for what it is — too large for this peer or for the remote — fails that
/// request with a clear error, at once; it never takes the link down and is never resent.
@Suite("Requests refused for what they are")
struct RefusedRequestTests {
  @Test("Above this peer's maximum message size: messageTooLarge at once, never queued")
  func aboveOwnLimit() async throws {
    try await ModesIntegrationTests.withHubAndEdge(
      mode: .single,
      configure: { $0.transport.maximumMessageBytes = 1024 }
    ) { _, edge in
      await #expect {
        _ = try await edge.peer.submit(String(repeating: "x", count: 2000), to: "hub")
      } throws: { error in
        (error as? PeerAgentError)?.code == .messageTooLarge
      }
      #expect(edge.peer.deliveryStatistics.unanswered == 0)
      let small = try await edge.peer.send("small", to: "hub")
      #expect(small.text == "ack from hub: small")
    }
  }

  @Test("Above the remote's announced maximum: messageTooLarge, the link stays up", arguments: Mode.allCases)
  func aboveRemoteLimit(mode: Mode) async throws {
    // The hub accepts 1 KiB; the edge sends up to 1 MiB.
    try await ModesIntegrationTests.withHubAndEdge(
      mode: mode,
      configure: { $0.transport.maximumMessageBytes = 1024 },
      edgeConfigure: { $0.transport.maximumMessageBytes = 1024 * 1024 }
    ) { hub, edge in
      // A first round trip: the hub's announcement has arrived.
      let hello = try await edge.peer.send("hello", to: "hub")
      #expect(hello.text == "ack from hub: hello")
      let started = ContinuousClock.now
      await #expect {
        try await edge.peer.send(String(repeating: "y", count: 4000), to: "hub", timeout: .seconds(20))
      } throws: { error in
        guard let error = error as? PeerAgentError else { return false }
        return error.code == .messageTooLarge && error.message.contains("'hub' accepts")
      }
      #expect(ContinuousClock.now - started < .seconds(5))
      let after = try await edge.peer.send("still up", to: "hub")
      #expect(after.text == "ack from hub: still up")
      #expect(edge.peer.deliveryStatistics.resent == 0)
      let downs = edge.events.all.filter {
        if case .disconnected = $0 { return true }
        return false
      }
      #expect(downs.isEmpty, "\(downs)")
      #expect(!hub.requests.all.contains { $0.text.hasPrefix("yyy") })
    }
  }

  @Test("A request recorded under a larger limit fails at the restart instead of being resent")
  func recoveredAboveLimit() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-oversize-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    do {
      let store = try SQLiteDeliveryStore(directory: directory)
      try await store.recordOutgoing(OutgoingRecord(id: "big", peer: "hub", text: String(repeating: "z", count: 5000), expiresAt: Date().timeIntervalSince1970 + 60))
      try await store.recordOutgoing(OutgoingRecord(id: "small", peer: "hub", text: "fits", expiresAt: Date().timeIntervalSince1970 + 60))
      try store.close()
    }
    let outbox = Outbox(store: try SQLiteDeliveryStore(directory: directory), window: 8, maximumMessageBytes: 1024)
    let recovered = try outbox.recover()
    #expect(recovered.map(\.id) == ["big", "small"])
    await #expect {
      _ = try await recovered[0].reply()
    } throws: { error in
      (error as? PeerAgentError)?.code == .messageTooLarge
    }
    #expect(outbox.count() == 1, "only the request that fits is still owed")
  }

  @Test("A plain send on a dialer with one unpinned target waits in the outbox and moves to the remote's name")
  func queuedForUnpinnedTarget() async throws {
    let certificates = try TestCertificates()
    let hub = try TestPeer(name: "hub", mode: .single, security: try certificates.security(for: "hub"), listen: true)
    try await withRunningPeers([hub]) {
      let address = try await hub.peer.listeningAddress
      let edge = try TestPeer(
        name: "edge",
        mode: .single,
        security: try certificates.security(for: "edge"),
        connect: [Peer.Target(address: address, expectedIdentity: nil)]
      )
      // Submitted before the edge runs: nothing is connected yet.
      let delivery = try await edge.peer.submit("before", timeout: .seconds(20))
      #expect(delivery.peer == "\(address)")
      try await withRunningPeers([edge]) {
        let reply = try await delivery.reply()
        #expect(reply.text == "ack from hub: before")
        #expect(reply.from == .verified("hub"))
      }
    }
  }
}

/// At-most-once handling: a request accepted before a crash, with no reply recorded, is
/// answered `outcomeUnknown` after the restart and never handled again; at-least-once handles
/// it again.
@Suite("Handling across a crash: at-least-once and at-most-once")
struct HandlingTests {
  static func inbox(_ store: SQLiteDeliveryStore, _ handling: Peer.Config.Delivery.Handling) -> Inbox {
    Inbox(
      store: store,
      handling: handling,
      retention: .seconds(3600),
      bounds: WindowBounds(count: 1000),
      logger: Logger(label: "test")
    )
  }

  @Test("A request whose handler ended without a recorded reply (a crash, a cancelled stream) is resent", arguments: [Peer.Config.Delivery.Handling.atLeastOnce, .atMostOnce])
  func acceptedBeforeCrash(handling: Peer.Config.Delivery.Handling) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-handling-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let request = IncomingRequest(id: "r-1", text: "pay 10", from: .verified("hub"), link: .sendStatus)
    let calls = Atomic<Int>(0)

    // First life: the handler runs and ends without a reply to record — as when the process
    // dies under it, or its stream goes away and cancels it. (The kill -9 process test,
    // CrashRecoveryTests, covers a real crash.)
    do {
      let store = try SQLiteDeliveryStore(directory: directory)
      _ = await Self.inbox(store, handling).handle(request) { request in
        calls.add(1, ordering: .relaxed)
        return nil  // cancelled: no reply
      }
      // The process ends: its folder is unlocked (deterministically, not whenever the
      // store happens to be released).
      try store.close()
    }

    // Second life, same store: the sender resends the request.
    let inbox = Self.inbox(try SQLiteDeliveryStore(directory: directory), handling)
    let reply = try #require(
      await inbox.handle(request) { request in
        calls.add(1, ordering: .relaxed)
        return Answer(id: request.id, text: "paid again")
      }
    )
    if handling == .atMostOnce {
      #expect(calls.load(ordering: .relaxed) == 1, "at most once, yet handled twice")
      #expect(reply.code == "outcomeUnknown")
      #expect(reply.error != nil)
      #expect(inbox.outcomesUnknown == 1)
    } else {
      #expect(calls.load(ordering: .relaxed) == 2)
      #expect(reply.text == "paid again")
      #expect(reply.code == nil)
    }
    // A later repeat gets the same answer again, without the handler.
    let again = try #require(
      await inbox.handle(request) { _ in
        calls.add(1, ordering: .relaxed)
        return Answer(id: request.id, text: "never")
      }
    )
    #expect(again.code == reply.code)
    #expect(again.text == reply.text)
  }

  @Test("outcomeUnknown reaches the sender as PeerAgentError.outcomeUnknown")
  func outcomeUnknownAtTheSender() async throws {
    let promise = Promise<Answer>()
    let outbox = Outbox(store: InMemoryDeliveryStore(capacity: 10), window: 1)
    let delivery = Delivery(id: "r-1", text: "pay 10", peer: "edge", promise: promise, started: .now, outbox: outbox)
    promise.complete(
      .success(
        Answer(id: "r-1", text: "", error: "may or may not have been handled", code: "outcomeUnknown", from: .verified("edge"))
      )
    )
    await #expect {
      try await delivery.reply()
    } throws: { error in
      (error as? PeerAgentError)?.code == .outcomeUnknown
    }
  }
}
