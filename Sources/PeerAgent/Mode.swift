/// How two peers carry calls in both directions (see docs/design.md).
public enum Mode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
  /// One connection, dialed by one side. The dialer opens `getTask` (the listener pushes its
  /// requests down it) and a long-lived `tellResult` (the dialer's replies); the dialer's own
  /// requests go over `sendStatus`. Works through NAT: only the listener must be reachable.
  case single
  /// Two connections: each peer listens and dials the other, and sends its requests to the
  /// other's `sendStatus`. Plain gRPC both ways; both peers must be reachable.
  case dual

  /// The mode's name, as `--mode` takes it (`single`, `dual`).
  public var description: String { self.rawValue }
}
