internal import NIOCore
internal import NIOHTTP2
internal import NIOSSL
private import Synchronization

/// What one dialer learned about its connection: who the listener proved to be, or why the
/// handshake failed. Shared between the verification callback, the connection's observer, and
/// the dialer's session.
final class DialDiagnostics: Sendable {
  private struct State {
    var remote: RemotePeer?
    var failure: String?
  }

  private let state = Mutex(State())

  init() {}

  /// Who the listener proved to be, and with which key.
  var remote: RemotePeer? { self.state.withLock { $0.remote } }
  var identity: PeerIdentity? { self.remote?.identity }
  var failure: String? { self.state.withLock { $0.failure } }

  /// Whether the failure is one a redial cannot change — a certificate refused (wrong CA,
  /// wrong name, expired, revoked), no TLS, not on the allowlist — rather than the name being
  /// connected with another key for now.
  static func isPermanent(_ failure: String) -> Bool {
    if failure.contains("one name, one key") { return false }
    return ["certificate", "does not speak TLS", "allowlist", "refused this peer", "no longer authorized", "revoked"]
      .contains { failure.contains($0) }
  }

  func verified(_ remote: RemotePeer) {
    self.state.withLock {
      $0.remote = remote
      $0.failure = nil
    }
  }

  func failed(_ reason: String) {
    self.state.withLock { state in
      // The first, most specific reason wins (the callback's, before the generic alert).
      if state.failure == nil { state.failure = reason }
    }
  }
}
