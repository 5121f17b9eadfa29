/// The body of a reply as it came off the wire (or out of the de-duplication window).
struct ReplyBody: Sendable, Hashable {
  var id: String
  var text: String
  /// Set when the remote handler failed.
  var error: String?
  /// The handler was cancelled (its stream went away) rather than finished: the reply is not
  /// an answer to remember, and a repeat of the request is handled afresh.
  var wasCancelled = false
}
