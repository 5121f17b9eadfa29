/// The reply to one request, inside the library — the one reply type from the handler that
/// gives it to the caller that takes it: written back on the wire (`Contact_Result`, mapped in
/// `ContactWire.swift`), remembered in the receiver's de-duplication window, kept in the
/// sender's outbox until the caller takes it, and shown to the caller as a public ``Reply``.
package struct Answer: Sendable, Hashable {
  /// The id of the request it answers (empty from older peers, which answer in order).
  package var id: String
  /// The handler's reply text; empty when ``error`` is set.
  package var text: String
  /// Set when the request was not handled: the remote handler's error, or PeerAgent's reason.
  package var error: String?
  /// With `error`, the kind of failure PeerAgent itself reports (a ``PeerAgentError/Code``
  /// name, such as `outcomeUnknown`); `nil` for a handler's own error.
  package var code: String?
  /// Who answered, once the reply is received (the verified identity of the stream it came on).
  package var from: PeerIdentity?

  package init(id: String, text: String, error: String? = nil, code: String? = nil, from: PeerIdentity? = nil) {
    self.id = id
    self.text = text
    self.error = error
    self.code = code
    self.from = from
  }

  /// The answer to a request that PeerAgent refuses with `code`, without calling the handler.
  package static func refusal(of id: String, _ code: PeerAgentError.Code, _ error: String) -> Self {
    Self(id: id, text: "", error: error, code: "\(code)")
  }
}
