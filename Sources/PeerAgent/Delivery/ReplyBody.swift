/// The body of a reply as it came off the wire (or out of the de-duplication window).
struct ReplyBody: Sendable, Hashable {
  var id: String
  var text: String
  /// Set when the remote handler failed.
  var error: String?
  /// With `error`, the kind of failure PeerAgent itself reports (a ``PeerAgentError/Code``
  /// name, such as `outcomeUnknown`); `nil` for a handler's own error.
  var code: String? = nil
  /// The handler was cancelled (its stream went away) rather than finished: the reply is not
  /// an answer to remember, and a repeat of the request is handled afresh.
  var wasCancelled = false
}
