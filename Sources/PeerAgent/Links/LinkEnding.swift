internal import GRPCCore

/// Why a link ended, in words a user acts on: "hub shut down", "edge closed the connection",
/// "lost the connection to hub" — not a transport's error text, which stays in the log's
/// `detail`.
enum LinkEnding {
  /// The trailing metadata a peer ends its streams with when it shuts down, so that the other
  /// side can say "NAME shut down" rather than guess from a closed stream. Other peers (the
  /// article's) ignore it.
  enum Goodbye {
    static let key = "peer-agent-goodbye"
    static let shutdown = "shutdown"

    static var metadata: Metadata {
      var metadata = Metadata()
      metadata.addString(Self.shutdown, forKey: Self.key)
      return metadata
    }

    static func isShutdown(_ metadata: Metadata) -> Bool {
      metadata[stringValues: Self.key].contains(Self.shutdown)
    }
  }

  /// The reason recorded when this peer's own shutdown ends its links.
  static let ownShutdown = "this peer is shutting down"

  /// `raw` (what the stream or transport said) in plain words about `remote`.
  static func describe(_ raw: String, remote: String) -> String {
    func has(_ text: String) -> Bool { raw.contains(text) }
    if raw == "shutdown" { return Self.ownShutdown }
    if has("resourceExhausted") || has("maximum payload size") {
      return "\(remote) sent a message larger than this peer accepts (--max-message-bytes); the link is opened again"
    }
    if raw.hasSuffix(" shut down") { return raw }
    if has("the dialer closed getTask") || has("the remote closed sendStatus") || has("the remote ended getTask")
      || has("the remote ended tellResult") || has("CancellationError")
    {
      return "\(remote) closed the connection"
    }
    if has("Stream unexpectedly closed") || has("RST_STREAM") || has("connection reset") || has("Connection reset")
      || has("broken pipe") || has("uncleanShutdown") || has("unavailable") || raw == "the session ended"
      || has("ended") && (has("sendStatus") || has("getTask") || has("tellResult"))
    {
      return "lost the connection to \(remote) (it stopped, or the network failed)"
    }
    return raw
  }
}
