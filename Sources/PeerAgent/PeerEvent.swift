/// Something that happened to a ``Peer``'s listener or links, published on ``Peer/events``.
public enum PeerEvent: Sendable, Hashable {
  /// The listener is bound and serving at `address` (with the port chosen, if 0 was asked).
  case listening(address: PeerAddress)
  /// A remote peer can now be sent to.
  case connected(peer: PeerIdentity, link: LinkKind)
  /// The link to a remote peer closed. Requests to it wait in the outbox for the next link,
  /// until their deadlines.
  case disconnected(peer: PeerIdentity, link: LinkKind, reason: String)
  /// A connection was refused (by this peer's listener, or the remote refused this dialer):
  /// `remote` names the other side (address, or pinned name), `reason` says why.
  case refused(remote: String, reason: String)
  /// A dialer could not reach its remote and keeps trying with backoff.
  case unreachable(target: String, reason: String)
  /// The link to `peer` changed state: connecting, ready, degraded (silent for too long) or
  /// down; `reason` says why, where there is one.
  case linkState(peer: String, state: LinkState, reason: String?)
}
