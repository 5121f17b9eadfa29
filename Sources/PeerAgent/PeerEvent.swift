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
  /// `peer` runs in another mode than this peer (`theirs`, `ours`): the link half works.
  /// `message` says what happens and the fix. Reported once per remote.
  case modeMismatch(peer: String, theirs: Mode, ours: Mode, message: String)
}

/// A request from a remote peer, as the handler sees it.
public struct IncomingRequest: Sendable, Hashable {
  /// The request id given by the sender; empty from older peers (the article's programs).
  public var id: String
  /// The request text.
  public var text: String
  /// The sender's identity: verified by mutual TLS, or its address in plaintext.
  public var from: PeerIdentity
  /// The stream it arrived on.
  public var link: LinkKind
  /// The sender's trace context (W3C `traceparent` and `tracestate`), when it traces.
  public var traceContext: [String: String]

  /// Creates a request as the handler sees it (for tests of a handler).
  public init(id: String, text: String, from: PeerIdentity, link: LinkKind, traceContext: [String: String] = [:]) {
    self.id = id
    self.text = text
    self.from = from
    self.link = link
    self.traceContext = traceContext
  }
}

/// The reply to one of this peer's requests.
public struct Reply: Sendable, Hashable {
  /// The id of the request it answers.
  public var id: String
  /// The reply text.
  public var text: String
  /// Who answered.
  public var from: PeerIdentity
  /// From the call to ``Peer/send(_:to:timeout:)`` to the reply.
  public var roundTrip: Duration

  /// Creates a reply (for tests of code that takes one).
  public init(id: String, text: String, from: PeerIdentity, roundTrip: Duration) {
    self.id = id
    self.text = text
    self.from = from
    self.roundTrip = roundTrip
  }
}
