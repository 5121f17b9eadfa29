/// How requests reach one remote peer.
public enum LinkKind: String, Sendable, Hashable, CustomStringConvertible {
  /// This peer dialed the remote and sends on the remote's `sendStatus` (a single-channel
  /// dialer, or either side of a dual-channel pair).
  case sendStatus
  /// The remote dialed this peer in single-channel mode: requests are pushed down its open
  /// `getTask` stream and answered on its `tellResult` stream.
  case getTask

  /// The stream's name, as in logs and events (`sendStatus`, `getTask`).
  public var description: String { self.rawValue }
}
