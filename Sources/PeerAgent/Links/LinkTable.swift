internal import Logging
private import Synchronization

/// The one owner of which links exist to which remote identity, their states, and which link
/// each remote's requests are written on: a ``StateMachine`` behind a lock, whose actions
/// this type carries out (ending replaced links, writing what a new link is owed, waking
/// waiters, logging and publishing the changes).
///
/// Lock order: the table's lock may be held while the outbox's is taken (a new link's replay),
/// never the other way round.
final class LinkTable: Sendable {
  private let state = Mutex(StateMachine())
  private let outbox: Outbox
  private let events: EventHub
  private let logger: Logger
  /// Rung whenever a remote connects or goes (``connectedNames`` changed): the cluster's
  /// registry writes its leases then, instead of polling.
  let membership = Doorbell()

  init(outbox: Outbox, events: EventHub, logger: Logger) {
    self.outbox = outbox
    self.events = events
    self.logger = logger
  }

  /// The identities that can be sent to now, sorted by name.
  var connected: [PeerIdentity] { self.state.withLock { $0.connected } }

  /// Whether any remote can be sent to now.
  var hasConnections: Bool { self.state.withLock { $0.connectedCount > 0 } }

  /// The names of the remotes that can be sent to now.
  var connectedNames: Set<String> { self.state.withLock { Set($0.connectedNames) } }

  /// The state of the link to each remote heard of, by name.
  var states: [String: LinkState] { self.state.withLock { $0.states } }

  /// The event loop of `name`'s current link, if it has one on a loop.
  func executor(for name: String) -> EventLoopExecutor? {
    self.state.withLock { $0.remotes[name]?.current?.executor }
  }

  /// Every remote with a state: its name, state, and the kind of its current (else latest)
  /// link, sorted by name.
  var snapshot: [(name: String, state: LinkState, kind: LinkKind?)] {
    self.state.withLock { state in
      state.remotes.compactMap { name, remote in
        remote.state.map { (name, $0, (remote.current ?? remote.latest)?.kind) }
      }
    }.sorted { $0.name < $1.name }
  }

  /// The remotes the table knows (tests: plaintext ones are forgotten when their link ends).
  var remoteCount: Int { self.state.withLock { $0.remotes.count } }

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
      if let placeholder, placeholder != name { state.forget(placeholder) }
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
      self.membership.ring()
      if let state { self.report(state, of: name, reason: nil) }
    }
  }

  /// Ends `link`. Its unanswered requests stay in the outbox for the next link to the remote.
  func detach(_ link: Link, reason detail: String) {
    link.finishOutgoing()
    guard case .detach(let state) = self.state.withLock({ $0.detach(link) }) else { return }
    let reason = LinkEnding.describe(detail, remote: link.identity.name)
    self.logger.forLink(link.identity).info(
      "disconnected",
      metadata: ["link.kind": "\(link.kind)", "reason": "\(reason)", "detail": "\(detail)"]
    )
    self.events.emit(.disconnected(peer: link.identity, link: link.kind, reason: reason))
    self.membership.ring()
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

  /// Hands a reply that came on `link` (its `sendStatus` response stream) to its request.
  func deliver(_ answer: Answer, on link: Link) {
    self.report(link.deliver(answer, to: self.outbox), of: answer, from: link.identity)
  }

  /// Takes one message that came on a `tellResult` stream from `identity`: the remote was heard
  /// on its latest `getTask` link, and a reply (`nil` for a heartbeat's answer) goes to its
  /// request — matched on that link when it has no id.
  func receivedOnTellResult(_ answer: Answer?, from identity: PeerIdentity) {
    let link = self.latest(for: identity.name)
    link?.health.heard()
    guard var answer else { return }
    let resolution: Outbox.Resolution
    if let link {
      resolution = link.deliver(answer, to: self.outbox)
    } else if answer.id.isEmpty {
      resolution = .notWaiting
    } else {
      answer.from = identity
      resolution = self.outbox.resolve(answer)
    }
    self.report(resolution, of: answer, from: identity)
  }

  private func report(_ resolution: Outbox.Resolution, of answer: Answer, from identity: PeerIdentity) {
    // The link's logger only when there is something to say: not on every reply.
    var logger: Logger { self.logger.forLink(identity) }
    switch resolution {
    case .resolved:
      return
    case .misdirected(let addressee):
      logger.warning(
        "dropped a reply for a request sent to another peer",
        metadata: ["id": "\(answer.id)", "addressee": "\(addressee)"]
      )
    case .notWaiting where answer.id.isEmpty:
      logger.notice("a reply without an id matched no waiting request")
    case .notWaiting:
      // A repeat: the request was resent after a reconnect, and both copies were answered.
      logger.debug("a reply matched no waiting request", metadata: ["id": "\(answer.id)"])
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
    let reason = LinkEnding.describe(reason, remote: "")
    for link in links {
      link.finishOutgoing()
      self.report(.down, of: link.identity.name, reason: reason)
      self.events.emit(.disconnected(peer: link.identity, link: link.kind, reason: reason))
    }
    self.membership.ring()
  }

  private func report(_ state: LinkState, of name: String, reason: String?) {
    if state == .degraded {
      self.logger.forLink(.verified(name)).warning("link degraded", metadata: ["reason": "\(reason ?? "")", "event": "link"])
    }
    self.events.emit(.linkState(peer: name, state: state, reason: reason))
  }
}

extension LinkTable {
  /// The link table's state, as a value: which link is current for each remote identity, the
  /// latest link of each (current or ended), each remote's ``LinkState``, and the callers waiting
  /// for "the only peer" to connect.
  ///
  /// No locks and no side effects: every transition returns what the ``LinkTable`` must do
  /// about it (end a replaced link, wake waiters, report a state), the way grpc-swift's
  /// connection state machines do. One link is current per remote name: a newer link (a
  /// reconnect) replaces the older.
  struct StateMachine {
    /// What the table knows of one remote identity.
    struct Remote {
      /// The link its requests are written on, while it is connected.
      var current: Link?
      /// The latest link, current or ended: replies that come on `tellResult` after their
      /// `getTask` stream ended are matched on it.
      var latest: Link?
      /// Its state, once one was reported.
      var state: LinkState?
      /// Requests accepted up to this outbox sequence were written on ``current`` when it
      /// attached: a request written later is written only if its sequence is higher, so that
      /// none is written twice, nor missed, when a request is accepted while a link attaches.
      var replayedThrough: UInt64 = 0
    }

    /// What ``attach(_:)`` asks for.
    enum AttachAction {
      /// The table is closed: end the link.
      case refuse
      /// The link is current: end `replaced` (if any), give the link to `waiters` (callers of
      /// "the only peer"), and report `state` (if it changed).
      case attach(replaced: Link?, waiters: [WaiterQueue<PeerIdentity>.Continuation], state: LinkState?)
    }

    /// What ``detach(_:)`` asks for.
    enum DetachAction {
      /// The link was not current (replaced, or the table closed): nothing to report.
      case ignore
      /// The remote is disconnected: report it, and `state` if it changed.
      case detach(state: LinkState?)
    }

    /// What ``onlyPeer()`` finds.
    enum OnlyPeer {
      case found(PeerIdentity)
      case ambiguous([String])
      case closed(any Error)
      /// None is connected yet: wait for one.
      case wait
    }

    private(set) var remotes: [String: Remote] = [:]
    /// The remotes with a current link.
    private(set) var connectedCount = 0
    /// Callers waiting for "the only peer" to connect.
    var onlyPeerWaiters = WaiterQueue<PeerIdentity>()
    /// Set once the table is closed: it takes no link and no waiter from then on.
    private(set) var closedWith: (any Error)?

    init() {}

    /// Makes `link` current for its remote.
    mutating func attach(_ link: Link) -> AttachAction {
      if self.closedWith != nil { return .refuse }
      let name = link.identity.name
      var remote = self.remotes[name, default: Remote()]
      let replaced = remote.current
      if replaced == nil { self.connectedCount += 1 }
      remote.current = link
      remote.latest = link
      remote.replayedThrough = 0
      let state = Self.change(&remote, to: .ready)
      self.remotes[name] = remote
      // Callers waiting for "the only peer" take this one if it is now the only one.
      let waiters = self.connectedCount == 1 ? self.onlyPeerWaiters.removeAll() : []
      return .attach(replaced: replaced, waiters: waiters, state: state)
    }

    /// Records that `link` was written every request accepted up to `sequence`, if it is still
    /// current.
    mutating func replayed(_ link: Link, through sequence: UInt64) {
      let name = link.identity.name
      guard self.remotes[name]?.current === link else { return }
      self.remotes[name]!.replayedThrough = sequence
    }

    /// The link to write the request accepted as `sequence` to `name` on, if `name` is
    /// connected and the request was not written on its link when the link attached.
    func link(for name: String, sequence: UInt64) -> Link? {
      guard let remote = self.remotes[name], let link = remote.current, sequence > remote.replayedThrough else {
        return nil
      }
      return link
    }

    /// Ends `link`, if it is still current for its remote.
    mutating func detach(_ link: Link) -> DetachAction {
      let name = link.identity.name
      guard var remote = self.remotes[name], remote.current === link else { return .ignore }
      remote.current = nil
      self.connectedCount -= 1
      let state = Self.change(&remote, to: .down)
      // In plaintext a remote is named by its address and port, new with every connection:
      // nothing of it is kept once its link ends.
      self.remotes[name] = link.identity.isVerified ? remote : nil
      return .detach(state: state)
    }

    /// Forgets `name` if it has no link: a dialer's placeholder once its remote's name is known.
    mutating func forget(_ name: String) {
      guard let remote = self.remotes[name], remote.current == nil else { return }
      self.remotes[name] = nil
    }

    /// Sets the state of `name` (a dialer connecting, a heartbeat late). Returns whether it
    /// changed.
    mutating func setState(_ state: LinkState, of name: String) -> Bool {
      var remote = self.remotes[name, default: Remote()]
      defer { self.remotes[name] = remote }
      return Self.change(&remote, to: state) != nil
    }

    /// Closes the table: returns the links that were current (each remote is then down) and the
    /// waiting callers, to be failed with `error`.
    mutating func close(with error: any Error) -> (links: [Link], waiters: [WaiterQueue<PeerIdentity>.Continuation]) {
      if self.closedWith == nil { self.closedWith = error }
      var links: [Link] = []
      for name in self.remotes.keys {
        guard let link = self.remotes[name]!.current else { continue }
        links.append(link)
        self.remotes[name]!.current = nil
        self.remotes[name]!.state = .down
      }
      self.connectedCount = 0
      return (links, self.onlyPeerWaiters.removeAll())
    }

    /// The one connected remote, if there is exactly one.
    func onlyPeer() -> OnlyPeer {
      if let error = self.closedWith { return .closed(error) }
      switch self.connectedCount {
      case 0: return .wait
      case 1: return .found(self.remotes.values.first { $0.current != nil }!.current!.identity)
      default: return .ambiguous(self.connectedNames.sorted())
      }
    }

    /// The names of the remotes with a current link.
    var connectedNames: [String] {
      self.remotes.compactMap { $0.value.current == nil ? nil : $0.key }
    }

    /// The identities of the remotes with a current link, sorted by name.
    var connected: [PeerIdentity] {
      self.remotes.values.compactMap { $0.current?.identity }.sorted { $0.name < $1.name }
    }

    /// The state of every remote that has one.
    var states: [String: LinkState] {
      self.remotes.compactMapValues(\.state)
    }

    /// Sets `remote`'s state; returns it if it changed.
    private static func change(_ remote: inout Remote, to state: LinkState) -> LinkState? {
      guard remote.state != state else { return nil }
      remote.state = state
      return state
    }
  }
}
