import Foundation
import Synchronization
import Testing

@testable import PeerAgent

/// Real peers, real mutual TLS, on loopback, with certificates the test makes.
@Suite("Both modes, both directions, over mutual TLS")
struct ModesIntegrationTests {
  /// Starts hub and edge in `mode` and waits until each can send to the other.
  static func withHubAndEdge(
    mode: Mode,
    configure: @escaping @Sendable (inout Peer.Config) -> Void = { _ in },
    edgeConfigure: (@Sendable (inout Peer.Config) -> Void)? = nil,
    hubHandler: (@Sendable (IncomingRequest) async throws -> String)? = nil,
    edgeHandler: (@Sendable (IncomingRequest) async throws -> String)? = nil,
    certificates: TestCertificates? = nil,
    _ body: @Sendable (TestPeer, TestPeer) async throws -> Void
  ) async throws {
    let certificates = try certificates ?? TestCertificates()
    let hub = try TestPeer(
      name: "hub",
      mode: mode,
      security: try certificates.security(for: "hub"),
      listen: true,
      configure: configure,
      handler: hubHandler
    )
    try await withRunningPeers([hub]) {
      let hubAddress = try await hub.peer.listeningAddress
      let edge = try TestPeer(
        name: "edge",
        mode: mode,
        security: try certificates.security(for: "edge"),
        listen: mode == .dual,
        connect: [Peer.Target(address: hubAddress, expectedIdentity: "hub")],
        configure: edgeConfigure ?? configure,
        handler: edgeHandler
      )
      try await withRunningPeers([edge]) {
        if mode == .dual {
          let edgeAddress = try await edge.peer.listeningAddress
          hub.peer.dial(Peer.Target(address: edgeAddress, expectedIdentity: "edge"))
        }
        #expect(await hub.waitUntilConnected(to: "edge"))
        #expect(await edge.waitUntilConnected(to: "hub"))
        try await body(hub, edge)
      }
    }
  }

  @Test("Requests go both ways, with verified identities, on the links the mode prescribes", arguments: Mode.allCases)
  func bothDirections(mode: Mode) async throws {
    try await Self.withHubAndEdge(mode: mode) { hub, edge in
      let fromEdge = try await edge.peer.send("status?", to: "hub")
      #expect(fromEdge.text == "ack from hub: status?")
      #expect(fromEdge.from == .verified("hub"))

      let fromHub = try await hub.peer.send("task 1", to: "edge")
      #expect(fromHub.text == "ack from edge: task 1")
      #expect(fromHub.from == .verified("edge"))

      let atHub = try #require(hub.requests.all.first)
      #expect(atHub.from == .verified("edge"))
      #expect(atHub.text == "status?")
      #expect(atHub.id == fromEdge.id)
      #expect(atHub.link == .sendStatus)

      let atEdge = try #require(edge.requests.all.first)
      #expect(atEdge.from == .verified("hub"))
      #expect(atEdge.id == fromHub.id)
      // Single-channel: the listener's requests ride the dialer's getTask stream.
      #expect(atEdge.link == (mode == .single ? .getTask : .sendStatus))

      // Many in flight at once, both ways: every reply matched to its own request.
      try await withThrowingTaskGroup(of: Void.self) { group in
        for n in 0 ..< 200 {
          group.addTask {
            let reply = try await edge.peer.send("e\(n)")
            #expect(reply.text == "ack from hub: e\(n)")
          }
          group.addTask {
            let reply = try await hub.peer.send("h\(n)", to: "edge")
            #expect(reply.text == "ack from edge: h\(n)")
          }
        }
        try await group.waitForAll()
      }
      #expect(hub.requests.all.count == 201)
      #expect(edge.requests.all.count == 201)
    }
  }

  @Test("A handler's error reaches the sender as remoteHandlerFailed; the link stays up", arguments: Mode.allCases)
  func handlerErrors(mode: Mode) async throws {
    struct Refusal: Error, CustomStringConvertible { var description: String { "no such task" } }
    try await Self.withHubAndEdge(
      mode: mode,
      hubHandler: { request in
        if request.text == "fail" { throw Refusal() }
        return "ok"
      }
    ) { hub, edge in
      await #expect {
        try await edge.peer.send("fail", to: "hub")
      } throws: { error in
        let error = error as? PeerAgentError
        return error?.code == .remoteHandlerFailed && error?.message.contains("no such task") == true
      }
      let fine = try await edge.peer.send("fine", to: "hub")
      #expect(fine.text == "ok")
    }
  }

  @Test("A reply that does not come fails the caller at its deadline")
  func deadlines() async throws {
    // The handler answers only once the test lets it: the caller's failure can only come from
    // its deadline, never from a reply (no wall-clock bound; a CI run under load took 2.4 s
    // against a 2 s one). A watchdog lets the handler go after 30 s so that a deadline that
    // never fires ends the test as a failure, not a hang.
    let gate = Gate()
    defer { gate.open() }
    try await Self.withHubAndEdge(
      mode: .single,
      hubHandler: { request in
        await gate.wait()
        return "late"
      }
    ) { hub, edge in
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          try await Task.sleep(for: .seconds(30))
          gate.open()
        }
        await #expect {
          try await edge.peer.send("slow", to: "hub", timeout: .milliseconds(300))
        } throws: { ($0 as? PeerAgentError)?.code == .timedOut }
        group.cancelAll()
      }
      gate.open()
      await #expect {
        try await edge.peer.send("nobody", to: "nobody", timeout: .milliseconds(200))
      } throws: { ($0 as? PeerAgentError)?.code == .unknownPeer }
    }
  }

  @Test("A listener with several dialers sends to one by name")
  func severalDialers() async throws {
    let certificates = try TestCertificates()
    let hub = try TestPeer(name: "hub", mode: .single, security: try certificates.security(for: "hub"), listen: true)
    try await withRunningPeers([hub]) {
      let address = try await hub.peer.listeningAddress
      let edges = try (1 ... 3).map { n in
        try TestPeer(
          name: "edge\(n)",
          mode: .single,
          security: try certificates.security(for: "edge\(n)"),
          connect: [Peer.Target(address: address, expectedIdentity: "hub")]
        )
      }
      try await withRunningPeers(edges) {
        for edge in edges {
          #expect(await hub.waitUntilConnected(to: edge.peer.name))
        }
        #expect(hub.peer.connectedPeers.map(\.name) == ["edge1", "edge2", "edge3"])
        for n in [2, 1, 3, 2] {
          let reply = try await hub.peer.send("for edge\(n)", to: "edge\(n)")
          #expect(reply.text == "ack from edge\(n): for edge\(n)")
          #expect(reply.from.name == "edge\(n)")
        }
        #expect(edges.map { $0.requests.all.count } == [1, 2, 1])
        await #expect {
          try await hub.peer.send("to whom?")
        } throws: { ($0 as? PeerAgentError)?.code == .ambiguousPeer }
        // And each dialer still reaches the hub.
        for edge in edges {
          #expect(try await edge.peer.send("hi").from.name == "hub")
        }
      }
    }
  }

  @Test("The dialer may start first: it retries until the listener is there")
  func dialerFirst() async throws {
    let certificates = try TestCertificates()
    // Find a free port: listen on 0, note the port, stop.
    let first = try TestPeer(name: "hub", mode: .single, security: try certificates.security(for: "hub"), listen: true)
    let port = Mutex(0)
    try await withRunningPeers([first]) {
      let bound = try await first.peer.listeningAddress.port
      port.withLock { $0 = bound }
    }
    let address = PeerAddress(host: "127.0.0.1", port: port.withLock { $0 })
    let edge = try TestPeer(
      name: "edge",
      mode: .single,
      security: try certificates.security(for: "edge"),
      connect: [Peer.Target(address: address, expectedIdentity: "hub")]
    )
    try await withRunningPeers([edge]) {
      let early = Task { try await edge.peer.send("sent before the hub started", timeout: .seconds(20)) }
      let unreachable = await edge.events.wait {
        if case .unreachable = $0 { return true }
        return false
      }
      #expect(unreachable != nil)
      let hub = try TestPeer(
        name: "hub",
        mode: .single,
        security: try certificates.security(for: "hub"),
        configure: { $0.listen = address }
      )
      try await withRunningPeers([hub]) {
        let reply = try await early.value
        #expect(reply.text == "ack from hub: sent before the hub started")
        #expect(await edge.waitUntilConnected(to: "hub"))
      }
    }
  }

  @Test("Graceful shutdown lets requests in flight finish, then refuses new ones", arguments: Mode.allCases)
  func gracefulShutdown(mode: Mode) async throws {
    try await Self.withHubAndEdge(
      mode: mode,
      hubHandler: { request in
        try await Task.sleep(for: .milliseconds(400))
        return "done \(request.text)"
      }
    ) { hub, edge in
      let inFlight = (0 ..< 5).map { n in
        Task { try await edge.peer.send("job \(n)", to: "hub") }
      }
      // Wait until the hub is handling them, then shut it down.
      for _ in 0 ..< 200 where hub.requests.all.count < 5 {
        try await Task.sleep(for: .milliseconds(10))
      }
      #expect(hub.requests.all.count == 5)
      hub.peer.beginGracefulShutdown()
      for (n, task) in inFlight.enumerated() {
        #expect(try await task.value.text == "done job \(n)")
      }
      await #expect {
        try await hub.peer.send("after shutdown", to: "edge")
      } throws: { ($0 as? PeerAgentError)?.code == .shuttingDown }
      // The edge learns the hub is gone, and its next request fails clearly, without hanging.
      let gone = await edge.events.wait {
        if case .disconnected(let peer, _, _) = $0 { return peer.name == "hub" }
        return false
      }
      #expect(gone != nil)
    }
  }

  @Test("A request whose remote shuts down mid-request stays owed, and fails only at its deadline")
  func remoteShutsDownMidRequest() async throws {
    try await Self.withHubAndEdge(
      mode: .single,
      configure: { $0.shutdown.gracePeriod = .milliseconds(100) },
      hubHandler: { _ in
        try await Task.sleep(for: .seconds(20))
        return "too late"
      }
    ) { hub, edge in
      // Long enough that the link is down well before the deadline, even when the whole suite
      // loads the machine (the link went down 2 s after the request in one CI run).
      let waiting = Task { try await edge.peer.send("long job", to: "hub", timeout: .seconds(8)) }
      for _ in 0 ..< 200 where hub.requests.all.isEmpty {
        try await Task.sleep(for: .milliseconds(10))
      }
      let started = ContinuousClock.now
      hub.peer.beginGracefulShutdown()
      let gone = await edge.events.wait {
        if case .disconnected(let peer, _, _) = $0 { return peer.name == "hub" }
        return false
      }
      #expect(gone != nil)
      // The link is down, but the request is still owed: it waits for the hub to come back.
      #expect(edge.peer.deliveryStatistics.unanswered == 1)
      await #expect {
        try await waiting.value
      } throws: { ($0 as? PeerAgentError)?.code == .timedOut }
      #expect(ContinuousClock.now - started < .seconds(12))
      #expect(edge.peer.deliveryStatistics.unanswered == 0)
    }
  }
}
