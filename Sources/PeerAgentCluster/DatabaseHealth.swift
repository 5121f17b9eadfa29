internal import PeerAgent
internal import PostgresNIO

/// Whether the cluster database answers, as a hub sees it: every operation on it reports
/// here; the first failure after success and the first success after a failure are the
/// transitions a user is told about — once, in words — instead of a log line per failed query.
final class DatabaseHealth: Sendable {
  /// How long an operation may wait for the database before it counts as unreachable
  /// (postgres-nio's pool otherwise waits for a connection as long as it takes).
  static let limit = Duration.seconds(5)

  private let activity: ClusterActivity?
  private let events: @Sendable (PeerCluster.Event) -> Void

  init(activity: ClusterActivity?, events: @escaping @Sendable (PeerCluster.Event) -> Void) {
    self.activity = activity
    self.events = events
  }

  /// Runs `body` against the database within ``limit``, and records how it went: a
  /// connection-level failure (no answer, refused, closed) marks the database unreachable;
  /// success marks it reachable. A statement's own error (a constraint, a bad value) says
  /// nothing about reachability and is only rethrown.
  func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    do {
      let value = try await Self.withDeadline(Self.limit, body)
      self.reached()
      return value
    } catch {
      if Self.isUnreachable(error) { self.lost(error) }
      throw error
    }
  }

  /// The database answered.
  func reached() {
    guard let after = self.activity?.database(reachable: true, reason: nil) else { return }
    self.events(.databaseReachable(after: after))
  }

  /// The database did not answer.
  func lost(_ error: any Error) {
    let reason = Self.describe(error)
    guard self.activity?.database(reachable: false, reason: reason) != nil else { return }
    self.events(.databaseUnreachable(reason: reason))
  }

  /// Whether the database is believed to answer now.
  var isReachable: Bool { self.activity?.databaseReachable ?? true }

  /// Whether `error` is about reaching the database rather than about a statement.
  static func isUnreachable(_ error: any Error) -> Bool {
    if error is NoAnswer { return true }
    if let error = error as? PostgresTransactionError {
      return [error.beginError, error.closureError, error.commitError, error.rollbackError].contains { $0.map(Self.isUnreachable) ?? false }
    }
    if let error = error as? PSQLError {
      return [.connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed].contains(error.code)
    }
    return false
  }

  /// The reason in a line.
  static func describe(_ error: any Error) -> String {
    if let error = error as? NoAnswer { return error.description }
    let text = String(reflecting: error)
    if text.contains("Connection refused") || text.contains("connection refused") { return "connection refused" }
    if text.contains("serverClosedConnection") { return "the server closed the connection" }
    return PeerCluster.describe(error)
  }

  /// The database gave no answer within the limit.
  struct NoAnswer: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "no answer within \(limit.milliseconds / 1000) s" }
  }

  /// Runs `body`, failing with ``NoAnswer`` after `limit` (`body` is cancelled).
  static func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask { try await body() }
      group.addTask {
        try await Task.sleep(for: limit)
        return nil
      }
      defer { group.cancelAll() }
      guard let first = try await group.next(), let value = first else { throw NoAnswer(limit: limit) }
      return value
    }
  }
}

extension PeerCluster {
  /// What happens to a hub's link to the cluster database, for the application (the command
  /// line prints each as one line and a JSON `cluster` event).
  public enum Event: Sendable, Hashable {
    /// The hub is in the cluster: the database, and the hubs alive in it now (this one
    /// included).
    case joined(database: String, hubs: [String])
    /// The database stopped answering. Requests this hub accepts fail (they cannot be
    /// recorded), requests across hubs wait, and leases lapse if it lasts beyond their
    /// duration; agents connected here are still served their own requests.
    case databaseUnreachable(reason: String)
    /// It answers again, `after` it stopped.
    case databaseReachable(after: Duration)
  }
}
