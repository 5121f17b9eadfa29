import Foundation
import NIOCore
import Synchronization
import Testing

@testable import PeerAgent

/// Fault tests through a TCP proxy between the peers, in both modes: the link drops, the link
/// goes silent without closing (half-open), the receiver is slow. Nothing is lost, nothing is
/// handled twice, memory stays bounded, and the link state tells the truth.
@Suite("Link faults: drops, half-open links, slow receivers")
struct LinkFaultTests {
  static let heartbeat = Duration.milliseconds(200)
  static let heartbeatTimeout = Duration.seconds(1)

  /// Fast heartbeats and redials, so faults show within a second.
  static let fast: @Sendable (inout Peer.Config) -> Void = { config in
    config.health.heartbeatInterval = heartbeat
    config.health.heartbeatTimeout = heartbeatTimeout
    config.reconnect.initialBackoff = .milliseconds(20)
    config.reconnect.maximumBackoff = .milliseconds(200)
  }

  /// hub and edge in `mode`, every connection between them through a proxy (one in front of
  /// each listener).
  static func withProxiedPeers(
    mode: Mode,
    configure: @escaping @Sendable (inout Peer.Config) -> Void = fast,
    hubHandler: (@Sendable (IncomingRequest) async throws -> String)? = nil,
    _ body: @Sendable (TestPeer, TestPeer, [TCPProxy]) async throws -> Void
  ) async throws {
    let certificates = try TestCertificates()
    let hub = try TestPeer(
      name: "hub",
      mode: mode,
      security: try certificates.security(for: "hub"),
      listen: true,
      configure: configure,
      handler: hubHandler
    )
    try await withRunningPeers([hub], timeout: .seconds(90)) {
      let hubProxy = try TCPProxy(upstream: try await hub.peer.listeningAddress)
      let hubPort = try await hubProxy.start()
      let edge = try TestPeer(
        name: "edge",
        mode: mode,
        security: try certificates.security(for: "edge"),
        listen: mode == .dual,
        connect: [Peer.Target(address: PeerAddress(host: "127.0.0.1", port: hubPort), expectedIdentity: "hub")],
        configure: configure
      )
      try await withRunningPeers([edge], timeout: .seconds(90)) {
        var proxies = [hubProxy]
        if mode == .dual {
          let edgeProxy = try TCPProxy(upstream: try await edge.peer.listeningAddress)
          let edgePort = try await edgeProxy.start()
          proxies.append(edgeProxy)
          hub.peer.dial(Peer.Target(address: PeerAddress(host: "127.0.0.1", port: edgePort), expectedIdentity: "edge"))
        }
        #expect(await hub.waitUntilConnected(to: "edge"))
        #expect(await edge.waitUntilConnected(to: "hub"))
        do {
          try await body(hub, edge, proxies)
        } catch {
          for proxy in proxies { await proxy.stop() }
          throw error
        }
        for proxy in proxies { await proxy.stop() }
      }
    }
  }

  /// Sends `count` requests from `sender` to `receiver` concurrently; returns the replies.
  static func sendMany(_ count: Int, from sender: TestPeer, to receiver: String, label: String) -> Task<[String], any Error> {
    Task {
      try await withThrowingTaskGroup(of: String.self) { group in
        for n in 0 ..< count {
          group.addTask { try await sender.peer.send("\(label) \(n)", to: receiver, timeout: .seconds(30)).text }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
    }
  }

  /// Checks that every request of `label` reached the handler exactly once.
  static func expectHandledOnce(_ receiver: TestPeer, label: String, count: Int) {
    var seen: [String: Int] = [:]
    for request in receiver.requests.all where request.text.hasPrefix(label + " ") {
      seen[request.text, default: 0] += 1
    }
    #expect(seen.count == count, "\(label): \(seen.count) of \(count) handled")
    let twice = seen.filter { $0.value > 1 }
    #expect(twice.isEmpty, "\(label): handled more than once: \(twice.keys.sorted().prefix(5))")
  }

  @Test("Connections dropped mid-traffic: every request answered, each handled once, resends counted", arguments: Mode.allCases)
  func drops(mode: Mode) async throws {
    // The hub's handler drops every connection itself when it handles the 200th and the 600th
    // request from the edge, before it replies: requests are then in flight for certain (that
    // one's reply at least), however fast or loaded the machine. Waiting for a count from the
    // test's own task instead overslept, on a loaded run, until every request was answered.
    let handled = Atomic<Int>(0)
    let drop = Mutex<(@Sendable () -> Void)?>(nil)
    let handler: @Sendable (IncomingRequest) async throws -> String = { request in
      let n = handled.add(1, ordering: .relaxed).newValue
      if n == 200 || n == 600, let dropAll = drop.withLock({ $0 }) { dropAll() }
      return "ack from hub: \(request.text)"
    }
    try await Self.withProxiedPeers(mode: mode, hubHandler: handler) { hub, edge, proxies in
      let count = 1000
      drop.withLock { $0 = { for proxy in proxies { proxy.dropAll() } } }
      let up = Self.sendMany(count, from: edge, to: "hub", label: "edge->hub")
      let down = Self.sendMany(count, from: hub, to: "edge", label: "hub->edge")
      let upReplies = try await up.value
      let downReplies = try await down.value
      #expect(upReplies.count == count)
      #expect(downReplies.count == count)
      Self.expectHandledOnce(hub, label: "edge->hub", count: count)
      Self.expectHandledOnce(edge, label: "hub->edge", count: count)
      let resent = hub.peer.deliveryStatistics.resent + edge.peer.deliveryStatistics.resent
      let repeats = hub.peer.deliveryStatistics.repeatsAnswered + edge.peer.deliveryStatistics.repeatsAnswered
      print("[\(mode)] drops: resent \(resent), repeats answered from the window \(repeats)")
      #expect(resent > 0)
      #expect(hub.peer.deliveryStatistics.unanswered == 0)
      #expect(edge.peer.deliveryStatistics.unanswered == 0)
      let downs = edge.events.all.filter {
        if case .linkState("hub", .down, _) = $0 { return true }
        return false
      }
      #expect(!downs.isEmpty)
    }
  }

  @Test("A half-open link is marked down within the heartbeat timeout and recovers without loss", arguments: Mode.allCases)
  func halfOpen(mode: Mode) async throws {
    try await Self.withProxiedPeers(mode: mode) { hub, edge, proxies in
      #expect(try await edge.peer.send("before", to: "hub").text == "ack from hub: before")
      // Start from a ready link: on a loaded machine a late heartbeat can leave it degraded,
      // and a link already degraded would not report it again during the stall.
      for _ in 0 ..< 500 where edge.peer.linkStates["hub"] != .ready {
        try await Task.sleep(for: .milliseconds(10))
      }
      let mark = edge.events.all.count
      let stalledAt = ContinuousClock.now
      for proxy in proxies { proxy.stall() }
      // Requests sent during the silence wait in the outbox.
      let up = Self.sendMany(50, from: edge, to: "hub", label: "edge->hub")
      let down = Self.sendMany(50, from: hub, to: "edge", label: "hub->edge")

      let isDown: @Sendable (PeerEvent) -> Bool = {
        if case .linkState("hub", .down, _) = $0 { return true }
        return false
      }
      var detected: Duration?
      for _ in 0 ..< 500 {
        if edge.events.all.dropFirst(mark).contains(where: isDown) {
          detected = ContinuousClock.now - stalledAt
          break
        }
        try await Task.sleep(for: .milliseconds(10))
      }
      let detection = try #require(detected, "the edge never marked the stalled link down")
      print("[\(mode)] half-open link marked down after \(detection)")
      // That the stall is noticed at all, while the proxy still holds it; how soon is the
      // heartbeat's own business (1 s here, printed above), not a wall-clock bound a loaded
      // machine can break.
      #expect(detection < Self.heartbeatTimeout + .seconds(10))
      let degraded = edge.events.all.dropFirst(mark).contains {
        if case .linkState("hub", .degraded, _) = $0 { return true }
        return false
      }
      let states = edge.events.all.compactMap { event -> String? in
        if case .linkState(let name, let state, let reason) = event { return "\(name) \(state) \(reason ?? "")" }
        return nil
      }
      #expect(degraded, "the link should be degraded before it is down; link states: \(states)")

      for proxy in proxies { proxy.resume() }
      #expect(try await up.value.count == 50)
      #expect(try await down.value.count == 50)
      Self.expectHandledOnce(hub, label: "edge->hub", count: 50)
      Self.expectHandledOnce(edge, label: "hub->edge", count: 50)
      for _ in 0 ..< 500 where edge.peer.linkStates["hub"] != .ready {
        try await Task.sleep(for: .milliseconds(10))
      }
      #expect(edge.peer.linkStates["hub"] == .ready)
    }
  }

  @Test("A slow receiver: the sender's window stays bounded and send waits", arguments: Mode.allCases)
  func slowReceiver(mode: Mode) async throws {
    let window = 8
    // The receiver handles nothing until the gate opens: however fast the machine, the window
    // fills and stays full while the test looks at it.
    let gate = Gate()
    defer { gate.open() }
    try await Self.withProxiedPeers(
      mode: mode,
      configure: { config in
        config.delivery.maximumInFlight = window
        config.health.heartbeatInterval = .milliseconds(500)
        config.health.heartbeatTimeout = .seconds(5)
      },
      hubHandler: { request in
        await gate.wait()
        return "slow ack: \(request.text)"
      }
    ) { hub, edge, _ in
      let count = 64
      let sends = Self.sendMany(count, from: edge, to: "hub", label: "edge->hub")
      var most = 0
      for _ in 0 ..< 1000 where edge.peer.deliveryStatistics.unanswered < window {
        try await Task.sleep(for: .milliseconds(5))
      }
      for _ in 0 ..< 40 {
        most = max(most, edge.peer.deliveryStatistics.unanswered)
        try await Task.sleep(for: .milliseconds(5))
      }
      // Never more than the window unanswered, however many callers wait.
      #expect(most == window)
      // A caller that cannot get room before its deadline fails clearly, without hanging.
      let started = ContinuousClock.now
      await #expect {
        try await edge.peer.send("no room", to: "hub", timeout: .milliseconds(200))
      } throws: { error in
        (error as? PeerAgentError)?.code == .timedOut
      }
      // Without hanging: the bound is a watchdog, ten times the caller's deadline over.
      #expect(ContinuousClock.now - started < .seconds(10))
      gate.open()
      #expect(try await sends.value.count == count)
      Self.expectHandledOnce(hub, label: "edge->hub", count: count)
      // The link stayed up: a held handler holds up neither heartbeats nor other requests.
      let downs = edge.events.all.filter {
        if case .linkState("hub", .down, _) = $0 { return true }
        return false
      }
      #expect(downs.isEmpty)
    }
  }
}
