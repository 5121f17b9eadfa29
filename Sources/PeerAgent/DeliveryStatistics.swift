/// Counters of a peer's delivery machinery, since it started.
public struct DeliveryStatistics: Sendable, Hashable {
  /// Requests sent and not answered yet (queued, or written and waiting).
  public var unanswered: Int
  /// Requests written again after a reconnect or a restart.
  public var resent: Int
  /// Repeated requests answered from the de-duplication window, without calling the handler.
  public var repeatsAnswered: Int
  /// Replies dropped because they came from another peer than the one their request was sent
  /// to (in plaintext: another connection's remote address).
  public var misdirectedReplies: Int = 0
}
