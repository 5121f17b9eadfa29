import Foundation
import Logging
import PeerAgent
import Synchronization

/// Records a peer's events and waits for one.
final class EventRecorder: Sendable {
  private let events = Mutex<[PeerEvent]>([])

  var all: [PeerEvent] { self.events.withLock { $0 } }

  func record(_ event: PeerEvent) {
    self.events.withLock { $0.append(event) }
  }

  /// Forgets the events recorded so far.
  func clear() {
    self.events.withLock { $0.removeAll() }
  }

  /// Waits up to `timeout` for an event matching `predicate`; returns it, or `nil`.
  func wait(
    timeout: Duration = .seconds(10),
    for predicate: @Sendable (PeerEvent) -> Bool
  ) async -> PeerEvent? {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
      if let event = self.events.withLock({ $0.first(where: predicate) }) { return event }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return nil
  }

  /// The reason of the first refusal recorded within `timeout`.
  func refusal(timeout: Duration = .seconds(10)) async -> String? {
    let event = await self.wait(timeout: timeout) {
      if case .refused = $0 { return true }
      return false
    }
    if case .refused(_, let reason) = event { return reason }
    return nil
  }
}

/// What a test's handler saw.
final class RequestLog: Sendable {
  private let requests = Mutex<[IncomingRequest]>([])
  var all: [IncomingRequest] { self.requests.withLock { $0 } }
  func record(_ request: IncomingRequest) { self.requests.withLock { $0.append(request) } }
}

/// Holds handlers until the test opens it, so a test controls when work finishes instead of
/// racing a sleep against the machine's speed.
final class Gate: Sendable {
  private struct State {
    var isOpen = false
    var waiters: [CheckedContinuation<Void, Never>] = []
  }
  private let state = Mutex(State())

  func wait() async {
    await withCheckedContinuation { continuation in
      let passes = self.state.withLock { state in
        if state.isOpen { return true }
        state.waiters.append(continuation)
        return false
      }
      if passes { continuation.resume() }
    }
  }

  func open() {
    let waiters = self.state.withLock { state in
      state.isOpen = true
      defer { state.waiters = [] }
      return state.waiters
    }
    for waiter in waiters { waiter.resume() }
  }
}

/// A peer under test, with its recorder and request log.
struct TestPeer: Sendable {
  let peer: Peer
  let events: EventRecorder
  let requests: RequestLog

  init(
    name: String,
    mode: Mode,
    security: Peer.Config.Security,
    listen: Bool = false,
    connect: [Peer.Target] = [],
    configure: @Sendable (inout Peer.Config) -> Void = { _ in },
    handler: (@Sendable (IncomingRequest) async throws -> String)? = nil
  ) throws {
    let requests = RequestLog()
    let config = Peer.Config.defaults(mode: mode) { config in
      config.name = name
      config.security = security
      config.listen = listen ? PeerAddress(host: "127.0.0.1", port: 0) : nil
      config.connect = connect
      config.reconnect.initialBackoff = .milliseconds(20)
      config.reconnect.maximumBackoff = .milliseconds(500)
      configure(&config)
    }
    var logger = Logger(label: "test.\(name)")
    logger.logLevel = ProcessInfo.processInfo.environment["PEER_AGENT_TEST_LOG"] != nil ? .debug : .critical
    self.peer = try Peer(config: config, logger: logger) { request in
      requests.record(request)
      if let handler { return try await handler(request) }
      return "ack from \(name): \(request.text)"
    }
    self.events = EventRecorder()
    self.requests = requests
  }

  /// Runs the peer, recording its events, until the group is cancelled or the peer stops.
  func run(in group: inout ThrowingDiscardingTaskGroup<any Error>) {
    let peer = self.peer
    let events = self.events
    group.addTask { try await peer.run() }
    group.addTask {
      for await event in peer.events { events.record(event) }
    }
  }

  func waitUntilConnected(to name: String, timeout: Duration = .seconds(10)) async -> Bool {
    await self.events.wait(timeout: timeout) {
      if case .connected(let peer, _) = $0 { return peer.name == name }
      return false
    } != nil
  }
}

/// Runs `body` with the peers running; shuts them down after, and bounds the whole in time.
func withRunningPeers(
  _ peers: [TestPeer],
  timeout: Duration = .seconds(60),
  _ body: @Sendable () async throws -> Void
) async throws {
  try await withThrowingDiscardingTaskGroup { group in
    for peer in peers { peer.run(in: &group) }
    let watchdog = Task {
      try await Task.sleep(for: timeout)
      for peer in peers { peer.peer.beginGracefulShutdown() }
    }
    defer { watchdog.cancel() }
    do {
      try await body()
    } catch {
      for peer in peers { peer.peer.beginGracefulShutdown() }
      throw error
    }
    for peer in peers { peer.peer.beginGracefulShutdown() }
  }
}
