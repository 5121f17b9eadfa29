internal import Logging
private import Synchronization

/// The one owner of which links exist to which remote identity, their states, and which link
/// each remote's requests are written on: a ``LinkTableState`` behind a lock, whose actions
/// this type carries out (ending replaced links, writing what a new link is owed, waking
/// waiters, logging and publishing the changes).
///
/// Lock order: the table's lock may be held while the outbox's is taken (a new link's replay),
/// never the other way round.
final class LinkTable: Sendable {
  private let state = Mutex(LinkTableState())
  private let outbox: Outbox
  private let events: EventHub
  private let logger: Logger

  init(outbox: Outbox, events: EventHub, logger: Logger) {
    self.outbox = outbox
    self.events = events
    self.logger = logger
  }

  /// The identities that can be sent to now, sorted by name.
  var connected: [PeerIdentity] { self.state.withLock { $0.connected } }

  /// The names of the remotes that can be sent to now.
  var connectedNames: Set<String> { self.state.withLock { Set($0.connectedNames) } }

  /// The state of the link to each remote heard of, by name.
  var states: [String: LinkState] { self.state.withLock { $0.states } }

  /// The latest link to `name`, current or ended.
  func latest(for name: String) -> Link? {
    self.state.withLock { $0.remotes[name]?.latest }
  }

  /// Makes `link` the way to its remote, writes on it every request the remote is owed, and
  /// says so; or ends it, when the table is closed.
  ///
  /// - Parameter placeholder: For a dialer's link, the name requests were queued under before
  ///   the remote's name was known (``Peer/Target/queueName``); they move to the remote's name.
  func attach(_ link: Link, queuedAs placeholder: String? = nil) {
    let name = link.identity.name
    if let placeholder { self.outbox.rename(placeholder, to: name) }
    let action = self.state.withLock { state in
      let action = state.attach(link)
      if case .attach = action {
        let (owed, through) = self.outbox.pending(for: name)
        for outgoing in owed { link.enqueue(outgoing) }
        state.replayed(link, through: through)
      }
      return action
    }
    switch action {
    case .refuse:
      link.finishOutgoing()
    case .attach(let replaced, let waiters, let state):
      replaced?.finishOutgoing()
      for waiter in waiters { waiter.resume(returning: link.identity) }
      self.logger.forLink(link.identity).info(
        "connected",
        metadata: ["link.kind": "\(link.kind)", "unanswered": "\(self.outbox.count(for: name))"]
      )
      self.events.emit(.connected(peer: link.identity, link: link.kind))
      if let state { self.report(state, of: name, reason: nil) }
    }
  }

  /// Ends `link`. Its unanswered requests stay in the outbox for the next link to the remote.
  func detach(_ link: Link, reason: String) {
    link.finishOutgoing()
    guard case .detach(let state) = self.state.withLock({ $0.detach(link) }) else { return }
    self.logger.forLink(link.identity).info(
      "disconnected",
      metadata: ["link.kind": "\(link.kind)", "reason": "\(reason)"]
    )
    self.events.emit(.disconnected(peer: link.identity, link: link.kind, reason: reason))
    if let state { self.report(state, of: link.identity.name, reason: reason) }
  }

  /// Writes a request just accepted into the outbox on its remote's link, if it is connected
  /// (else the next link to attach writes it).
  func write(_ accepted: Outbox.Accepted) {
    let peer = accepted.delivery.peer
    self.state.withLock { state in
      _ = state.link(for: peer, sequence: accepted.sequence)?.enqueue(accepted.outgoing)
    }
  }

  /// Records and reports a remote's new state, if it changed (a dialer connecting, a
  /// heartbeat late or back).
  func setState(_ linkState: LinkState, of name: String, reason: String?) {
    guard self.state.withLock({ $0.setState(linkState, of: name) }) else { return }
    self.report(linkState, of: name, reason: reason)
  }

  /// The only connected remote, waiting until `deadline` for one to connect.
  ///
  /// - Throws: ``PeerAgentError``: `ambiguousPeer`, `notConnected`, or the table's closing
  ///   error.
  func onlyPeer(deadline: ContinuousClock.Instant) async throws -> PeerIdentity {
    try await WaiterQueue.suspend { key, continuation in
      self.state.withLock { state -> Result<PeerIdentity, any Error>? in
        switch state.onlyPeer() {
        case .found(let identity):
          return .success(identity)
        case .closed(let error):
          return .failure(error)
        case .ambiguous(let names):
          return .failure(
            PeerAgentError(code: .ambiguousPeer, message: "several peers are connected (\(names.joined(separator: ", "))): name one")
          )
        case .wait:
          state.onlyPeerWaiters.append(key, continuation, deadline: deadline)
          return nil
        }
      }
    } onCancel: { key in
      self.state.withLock { $0.onlyPeerWaiters.remove(key) }
    }
  }

  /// Fails the callers of ``onlyPeer(deadline:)`` whose deadline is past.
  func expireWaiters(now: ContinuousClock.Instant) {
    let overdue = self.state.withLock { $0.onlyPeerWaiters.removeExpired(at: now) }
    for waiter in overdue {
      waiter.resume(throwing: PeerAgentError(code: .notConnected, message: "no remote peer connected before the deadline"))
    }
  }

  /// Refuses new links and waiters, fails the waiting callers with `error`, and ends every
  /// current link (each remote is reported down, for `reason`).
  func close(with error: any Error, reason: String) {
    let (links, waiters) = self.state.withLock { $0.close(with: error) }
    for waiter in waiters { waiter.resume(throwing: error) }
    for link in links {
      link.finishOutgoing()
      self.report(.down, of: link.identity.name, reason: reason)
      self.events.emit(.disconnected(peer: link.identity, link: link.kind, reason: reason))
    }
  }

  private func report(_ state: LinkState, of name: String, reason: String?) {
    if state == .degraded {
      self.logger.forLink(.verified(name)).warning("link degraded", metadata: ["reason": "\(reason ?? "")"])
    }
    self.events.emit(.linkState(peer: name, state: state, reason: reason))
  }
}
