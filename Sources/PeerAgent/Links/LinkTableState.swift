/// The link table's state, as a value: which link is current for each remote identity, the
/// latest link of each (current or ended), each remote's ``LinkState``, and the callers waiting
/// for "the only peer" to connect.
///
/// No locks and no side effects: every transition returns what the ``LinkTable`` must do
/// about it (end a replaced link, wake waiters, report a state), the way grpc-swift's
/// connection state machines do. One link is current per remote name: a newer link (a
/// reconnect) replaces the older.
struct LinkTableState {
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
    self.remotes[name] = remote
    return .detach(state: state)
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
