internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2

/// One kind of dialer session: the long-lived streams it opens on one connection. The mode
/// picks the kind (``SessionSetup/session(for:)``, the one place that does); the ``Dialer`` runs
/// each stream as a child of the session's task group, and the first to end ends the session.
protocol DialerSession: Sendable {
  /// The session's streams. Each throws (or returns) when it ends.
  var streams: [@Sendable () async throws -> Void] { get }
}
