/// How a link to one remote peer is doing, as ``PeerEvent/linkState(peer:state:reason:)``
/// reports it and ``Peer/linkStates`` shows it.
public enum LinkState: String, Sendable, Hashable, CustomStringConvertible {
  /// A dialer is connecting (or reconnecting) to the remote.
  case connecting
  /// The link is up and the remote answers.
  case ready
  /// The link is up but the remote has been silent for more than two heartbeat intervals:
  /// requests still go out, and the link is closed if the silence reaches the heartbeat
  /// timeout.
  case degraded
  /// The link is closed; its unanswered requests wait in the outbox for the next one.
  case down

  /// The state's name, as in logs and events.
  public var description: String { self.rawValue }
}
