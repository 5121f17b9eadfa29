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
