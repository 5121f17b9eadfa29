/// An outgoing request as the store keeps it.
package struct OutgoingRecord: Sendable, Hashable {
  /// The request id.
  package var id: String
  /// The remote peer's name.
  package var peer: String
  /// The request text.
  package var text: String
  /// When the request stops being worth delivering, in seconds since 1970 (wall clock, so that
  /// it means the same after a restart).
  package var expiresAt: Double
  /// The reply, once it arrived (and until the caller took it).
  package var answer: Answer?

  package init(id: String, peer: String, text: String, expiresAt: Double, answer: Answer? = nil) {
    self.id = id
    self.peer = peer
    self.text = text
    self.expiresAt = expiresAt
    self.answer = answer
  }
}
