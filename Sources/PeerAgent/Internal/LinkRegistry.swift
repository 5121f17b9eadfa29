private import Synchronization

/// The remote peers this peer can send to right now, by name, and the callers waiting for one
/// to connect (a request addressed to "the only peer" before any is connected).
///
/// One route per remote name: a newer route (a reconnect) replaces the older. The requests
/// themselves live in the ``Outbox``, not here: a route coming or going moves no request.
final class LinkRegistry: Sendable {
  private struct Waiter {
    var deadline: ContinuousClock.Instant
    var continuation: CheckedContinuation<OutboundRoute, any Error>
  }

  private struct State {
    var routes: [String: OutboundRoute] = [:]
    /// The latest route of each remote, current or ended: replies without an id that arrive
    /// after a `getTask` stream ended are matched on it.
    var latest: [String: OutboundRoute] = [:]
    var waiters: [Int: Waiter] = [:]
    var nextWaiter = 0
    var closedWith: (any Error)?
  }

  private let state = Mutex(State())

  init() {}

  /// The identities that can be sent to now, sorted by name.
  var connected: [PeerIdentity] {
    self.state.withLock { $0.routes.values.map(\.identity) }.sorted { $0.name < $1.name }
  }

  /// Makes `route` the way to reach its peer. Returns the route it replaced, if any, or
  /// `nil` and `false` when the registry is closed.
  func add(_ route: OutboundRoute) -> (replaced: OutboundRoute?, accepted: Bool) {
    let (replaced, ready, accepted): (OutboundRoute?, [Waiter], Bool) = self.state.withLock { state in
      if state.closedWith != nil { return (nil, [], false) }
      let replaced = state.routes.updateValue(route, forKey: route.identity.name)
      state.latest[route.identity.name] = route
      // Callers waiting for "the only peer" take this one if it is now the only one.
      guard state.routes.count == 1 else { return (replaced, [], true) }
      defer { state.waiters.removeAll() }
      return (replaced, Array(state.waiters.values), true)
    }
    for waiter in ready {
      waiter.continuation.resume(returning: route)
    }
    return (replaced, accepted)
  }

  /// Removes `route` if it is still current. Returns whether it was (the peer is now
  /// disconnected).
  func remove(_ route: OutboundRoute) -> Bool {
    self.state.withLock { state in
      let name = route.identity.name
      guard state.routes[name] === route else { return false }
      state.routes.removeValue(forKey: name)
      return true
    }
  }

  /// The latest route to `name`, current or ended.
  func latestRoute(to name: String) -> OutboundRoute? {
    self.state.withLock { $0.latest[name] }
  }

  /// The name of the only connected peer, waiting until `deadline` for one to connect.
  ///
  /// - Throws: ``PeerAgentError``: `ambiguousPeer`, `notConnected`, or the registry's
  ///   closing error.
  func onlyPeer(deadline: ContinuousClock.Instant) async throws -> PeerIdentity {
    enum Lookup {
      case found(PeerIdentity)
      case ambiguous([String])
      case closed(any Error)
      case wait
    }
    let lookup: Lookup = self.state.withLock { state in
      if let error = state.closedWith { return .closed(error) }
      switch state.routes.count {
      case 0: return .wait
      case 1: return .found(state.routes.values.first!.identity)
      default: return .ambiguous(state.routes.keys.sorted())
      }
    }
    switch lookup {
    case .found(let identity):
      return identity
    case .closed(let error):
      throw error
    case .ambiguous(let names):
      throw PeerAgentError(
        code: .ambiguousPeer,
        message: "several peers are connected (\(names.joined(separator: ", "))): name one"
      )
    case .wait:
      return try await self.waitForOnlyPeer(deadline: deadline).identity
    }
  }

  private func waitForOnlyPeer(deadline: ContinuousClock.Instant) async throws -> OutboundRoute {
    let id = self.state.withLock { state -> Int in
      state.nextWaiter += 1
      return state.nextWaiter
    }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        let immediate: Result<OutboundRoute, any Error>? = self.state.withLock { state in
          if let error = state.closedWith { return .failure(error) }
          if state.routes.count == 1 { return .success(state.routes.values.first!) }
          state.waiters[id] = Waiter(deadline: deadline, continuation: continuation)
          return nil
        }
        if let immediate { continuation.resume(with: immediate) }
      }
    } onCancel: {
      let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
      waiter?.continuation.resume(throwing: CancellationError())
    }
  }

  /// Fails the waiters whose deadline is past.
  func expireWaiters(now: ContinuousClock.Instant) {
    let overdue: [Waiter] = self.state.withLock { state in
      let ids = state.waiters.filter { $0.value.deadline <= now }.map(\.key)
      return ids.compactMap { state.waiters.removeValue(forKey: $0) }
    }
    for waiter in overdue {
      waiter.continuation.resume(
        throwing: PeerAgentError(code: .notConnected, message: "no remote peer connected before the deadline")
      )
    }
  }

  /// Refuses new waiters and routes, fails the waiting callers with `error`, and returns the
  /// routes that were current (the caller ends them).
  func close(with error: any Error) -> [OutboundRoute] {
    let (routes, waiters): ([OutboundRoute], [Waiter]) = self.state.withLock { state in
      if state.closedWith == nil { state.closedWith = error }
      let routes = Array(state.routes.values)
      let waiters = Array(state.waiters.values)
      state.routes.removeAll()
      state.waiters.removeAll()
      return (routes, waiters)
    }
    for waiter in waiters { waiter.continuation.resume(throwing: error) }
    return routes
  }
}
