private import Synchronization

/// The remote peers this peer can send to right now, by name, and the callers waiting for one
/// to connect.
///
/// One route per remote name: a newer route (a reconnect) replaces the older for new
/// requests; requests already on the older one finish there.
final class LinkRegistry: Sendable {
  private struct Waiter {
    var name: String?
    var deadline: ContinuousClock.Instant
    var continuation: CheckedContinuation<OutboundRoute, any Error>
  }

  private struct State {
    var routes: [String: OutboundRoute] = [:]
    /// Every route not yet removed, current or replaced: replies may still come on them.
    var live: [ObjectIdentifier: OutboundRoute] = [:]
    var waiters: [Int: Waiter] = [:]
    var nextWaiter = 0
    /// Open `tellResult` streams per remote name: while one is open, a `getTask` route that
    /// ended keeps its waiting requests, since their replies may still come on it.
    var replyStreams: [String: Int] = [:]
    var closedWith: (any Error)?
  }

  private let state = Mutex(State())

  init() {}

  /// The identities that can be sent to now, sorted by name.
  var connected: [PeerIdentity] {
    self.state.withLock { $0.routes.values.map(\.identity) }.sorted { $0.name < $1.name }
  }

  /// Every route that may still see replies (current or replaced), for deadline sweeps.
  var liveRoutes: [OutboundRoute] {
    self.state.withLock { Array($0.live.values) }
  }

  /// Makes `route` the way to reach its peer. Returns the route it replaced, if any.
  func add(_ route: OutboundRoute) -> OutboundRoute? {
    let (replaced, ready, refused): (OutboundRoute?, [Waiter], Bool) = self.state.withLock {
      state in
      if state.closedWith != nil { return (nil, [], true) }
      let replaced = state.routes.updateValue(route, forKey: route.identity.name)
      state.live[ObjectIdentifier(route)] = route
      var ready: [Waiter] = []
      for (id, waiter) in state.waiters where waiter.name == nil || waiter.name == route.identity.name {
        // A waiter for "any peer" takes this one only if it is now the only peer.
        if waiter.name == nil && state.routes.count != 1 { continue }
        ready.append(waiter)
        state.waiters.removeValue(forKey: id)
      }
      return (replaced, ready, false)
    }
    if refused {
      route.close(with: PeerAgentError(code: .shuttingDown, message: "the peer is shutting down"))
    }
    for waiter in ready {
      waiter.continuation.resume(returning: route)
    }
    return replaced
  }

  /// Removes `route` from the current routes, if it is still current.
  ///
  /// - Returns: `wasCurrent`: whether it was (the peer is now disconnected); `lingers`:
  ///   whether its waiting requests should stay, because a `tellResult` stream of the same peer
  ///   is still open and may yet carry their replies.
  func remove(_ route: OutboundRoute) -> (wasCurrent: Bool, lingers: Bool) {
    self.state.withLock { state in
      let name = route.identity.name
      let lingers = route.kind == .getTask && state.replyStreams[name, default: 0] > 0
      if !lingers {
        state.live.removeValue(forKey: ObjectIdentifier(route))
      }
      if state.routes[name] === route {
        state.routes.removeValue(forKey: name)
        return (true, lingers)
      }
      return (false, lingers)
    }
  }

  /// A `tellResult` stream from `name` opened.
  func openReplyStream(from name: String) {
    self.state.withLock { $0.replyStreams[name, default: 0] += 1 }
  }

  /// A `tellResult` stream from `name` closed. Returns the ended `getTask` routes whose
  /// waiting requests can no longer be answered (the caller fails them).
  func closeReplyStream(from name: String) -> [OutboundRoute] {
    self.state.withLock { state in
      let open = state.replyStreams[name, default: 1] - 1
      state.replyStreams[name] = open > 0 ? open : nil
      guard open <= 0 else { return [] }
      let ended = state.live.values.filter {
        $0.kind == .getTask && $0.identity.name == name && state.routes[name] !== $0
      }
      for route in ended { state.live.removeValue(forKey: ObjectIdentifier(route)) }
      return ended
    }
  }

  /// The route whose requests a reply on `tellResult` from `name` answers: the current
  /// `getTask` route, else one that ended but still has requests waiting.
  func replyRoute(from name: String) -> OutboundRoute? {
    self.state.withLock { state in
      if let current = state.routes[name], current.kind == .getTask { return current }
      return state.live.values.first { $0.kind == .getTask && $0.identity.name == name && $0.pending.count > 0 }
    }
  }

  /// The route to `name` (or to the only connected peer when `name` is `nil`), waiting for it
  /// to connect until `deadline`.
  func route(to name: String?, deadline: ContinuousClock.Instant) async throws -> OutboundRoute {
    enum Lookup {
      case found(OutboundRoute)
      case ambiguous([String])
      case closed(any Error)
      case wait
    }
    let lookup: Lookup = self.state.withLock { state in
      if let error = state.closedWith { return .closed(error) }
      if let name {
        if let route = state.routes[name] { return .found(route) }
        return .wait
      }
      switch state.routes.count {
      case 0: return .wait
      case 1: return .found(state.routes.values.first!)
      default: return .ambiguous(state.routes.keys.sorted())
      }
    }
    switch lookup {
    case .found(let route):
      return route
    case .closed(let error):
      throw error
    case .ambiguous(let names):
      throw PeerAgentError(
        code: .ambiguousPeer,
        message: "several peers are connected (\(names.joined(separator: ", "))): name one"
      )
    case .wait:
      return try await self.waitForRoute(to: name, deadline: deadline)
    }
  }

  private func waitForRoute(to name: String?, deadline: ContinuousClock.Instant) async throws
    -> OutboundRoute
  {
    let id = self.state.withLock { state -> Int in
      state.nextWaiter += 1
      return state.nextWaiter
    }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        let immediate: Result<OutboundRoute, any Error>? = self.state.withLock { state in
          if let error = state.closedWith { return .failure(error) }
          if let name, let route = state.routes[name] { return .success(route) }
          if name == nil, state.routes.count == 1 { return .success(state.routes.values.first!) }
          state.waiters[id] = Waiter(name: name, deadline: deadline, continuation: continuation)
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
      if let name = waiter.name {
        waiter.continuation.resume(
          throwing: PeerAgentError(
            code: .unknownPeer,
            message: "no peer named '\(name)' connected before the deadline"
          )
        )
      } else {
        waiter.continuation.resume(
          throwing: PeerAgentError(
            code: .notConnected,
            message: "no remote peer connected before the deadline"
          )
        )
      }
    }
  }

  /// Refuses new waiters and routes, fails the waiting callers with `error`, and returns the
  /// routes that were registered (the caller closes them).
  func close(with error: any Error) -> [OutboundRoute] {
    let (routes, waiters): ([OutboundRoute], [Waiter]) = self.state.withLock { state in
      if state.closedWith == nil { state.closedWith = error }
      let routes = Array(state.live.values)
      let waiters = Array(state.waiters.values)
      state.routes.removeAll()
      state.live.removeAll()
      state.waiters.removeAll()
      return (routes, waiters)
    }
    for waiter in waiters { waiter.continuation.resume(throwing: error) }
    return routes
  }
}
