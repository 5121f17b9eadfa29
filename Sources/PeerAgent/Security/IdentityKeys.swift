internal import GRPCCore
internal import X509
private import Synchronization

/// One name, one key: which public key each remote identity is connected with, while any of
/// its connections lives — inbound streams and outbound sessions alike, so that in dual mode
/// both directions of one remote must present the same key.
///
/// A second certificate for a name that is connected (another key of the same CA) is refused;
/// the same key (a reconnect) is welcome, and the link table replaces the stale link.
final class IdentityKeys: Sendable {
  /// A connection presented the identity of a live one with another key.
  struct Conflict: Error, Hashable, CustomStringConvertible {
    var name: String
    var connected: KeyFingerprint
    var presented: KeyFingerprint

    var description: String {
      "peer '\(self.name.logSafe)' is connected with key \(self.connected); this connection presented \(self.presented) (one name, one key: refused)"
    }

    /// The status a listener refuses the stream with.
    var rpcError: RPCError { RPCError(code: .permissionDenied, message: self.description) }
  }

  /// The key a name is connected with, and its connections that live now.
  private struct Claim {
    var key: KeyFingerprint
    var connections: [ObjectIdentifier: LiveConnection] = [:]
  }

  private let claims = Mutex<[String: Claim]>([:])
  private let reported = Mutex<[Conflict: ContinuousClock.Instant]>([:])

  init() {}

  /// Throws if `name` is connected with a key other than `key`; claims nothing.
  func check(_ name: String, key: KeyFingerprint) throws(Conflict) {
    if let claim = self.claims.withLock({ $0[name] }), claim.key != key {
      throw Conflict(name: name, connected: claim.key, presented: key)
    }
  }

  /// Records a connection of `remote` (verified: it has a key), unless its name is connected
  /// with another key. ``release(_:)`` ends the record.
  func claim(_ remote: RemotePeer, key: KeyFingerprint) throws(Conflict) -> LiveConnection {
    let name = remote.identity.name
    let connection = LiveConnection(remote: remote)
    let conflict = self.claims.withLock { claims -> Conflict? in
      var claim = claims[name, default: Claim(key: key)]
      guard claim.key == key else { return Conflict(name: name, connected: claim.key, presented: key) }
      claim.connections[ObjectIdentifier(connection)] = connection
      claims[name] = claim
      return nil
    }
    if let conflict { throw conflict }
    return connection
  }

  /// Ends the record of a connection made by ``claim(_:key:)``; the name is free for another
  /// key once none of its connections lives.
  func release(_ connection: LiveConnection) {
    let name = connection.remote.identity.name
    self.claims.withLock { claims in
      guard var claim = claims[name] else { return }
      claim.connections[ObjectIdentifier(connection)] = nil
      claims[name] = claim.connections.isEmpty ? nil : claim
    }
  }

  /// Whether a refusal for `conflict` is due to be logged: once a minute per name and keys.
  func shouldReport(_ conflict: Conflict, now: ContinuousClock.Instant = .now) -> Bool {
    self.reported.withLock { reported in
      if let last = reported[conflict], now - last < .seconds(60) { return false }
      if reported.count > 1_000 { reported.removeAll() }
      reported[conflict] = now
      return true
    }
  }

  /// The key each connected name holds now.
  var boundKeys: [String: KeyFingerprint] {
    self.claims.withLock { $0.mapValues(\.key) }
  }

  /// Ends every connection of `name` (another hub of the cluster holds it with another key).
  func end(_ name: String, because reason: String) {
    let connections = self.claims.withLock { $0[name].map { Array($0.connections.values) } ?? [] }
    for connection in connections { connection.end(because: reason) }
  }

  /// The connections that live now, for a reload to check again.
  var connections: [LiveConnection] {
    self.claims.withLock { $0.values.flatMap(\.connections.values) }
  }

  /// Runs `body` with a connection of `remote` recorded (nothing is recorded in plaintext),
  /// until it returns or the connection is ended by ``LiveConnection/end(because:)`` — a
  /// reload that no longer authorizes it — which throws ``LiveConnection/Ended``.
  func holding(_ remote: RemotePeer, _ body: @escaping @Sendable () async throws -> Void) async throws {
    guard let key = remote.key else { return try await body() }
    let connection = try self.claim(remote, key: key)
    defer { self.release(connection) }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await body() }
      group.addTask {
        await connection.ended.wait()
        if Task.isCancelled { return }
        throw LiveConnection.Ended(reason: connection.reason ?? "no longer authorized")
      }
      try await group.next()
      group.cancelAll()
    }
  }
}

/// One verified connection while it lives: what it proved, and how a reload ends it when its
/// certificate no longer verifies (revoked, expired, its CA no longer trusted) or the allowlist
/// no longer lists it.
final class LiveConnection: Sendable {
  /// Why a connection was ended.
  struct Ended: Error, CustomStringConvertible {
    var reason: String
    var description: String { "no longer authorized: \(self.reason)" }
  }

  let remote: RemotePeer
  let ended = Signal()
  private let why = Mutex<String?>(nil)

  init(remote: RemotePeer) {
    self.remote = remote
  }

  /// Why it was ended, once it was.
  var reason: String? { self.why.withLock { $0 } }

  /// Ends the connection's streams with `reason`.
  func end(because reason: String) {
    self.why.withLock { if $0 == nil { $0 = reason } }
    self.ended.set()
  }
}

/// Who is at the other end of a connection: the identity, and in mutual TLS the key it proved
/// and the chain it was verified with.
struct RemotePeer: Sendable, Hashable {
  var identity: PeerIdentity
  /// The fingerprint of the remote's certificate key; `nil` in plaintext.
  var key: KeyFingerprint?
  /// The verified chain, leaf first (empty in plaintext), and the role that presented it: a
  /// reload verifies it again.
  var chain: [Certificate] = []
  var presentedBy: CertificateVerifier.PresentedBy = .dialer
}

/// Where "one name, one key" is kept beyond this peer: the cluster's registry, which binds each
/// agent's name to the key of the connection that holds its lease, on whichever hub.
package protocol SharedKeyRegistry: Sendable {
  /// The key `name` is bound to on another hub by a lease that lives, if any (its
  /// ``KeyFingerprint/description``).
  func boundKey(of name: String) async throws -> String?
}
