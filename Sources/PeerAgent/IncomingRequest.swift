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

  /// Creates a request as the handler sees it (for tests of a handler).
  public init(id: String, text: String, from: PeerIdentity, link: LinkKind) {
    self.id = id
    self.text = text
    self.from = from
    self.link = link
  }
}
