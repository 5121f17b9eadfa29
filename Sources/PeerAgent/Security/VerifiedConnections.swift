internal import NIOCore
internal import NIOSSL
internal import SwiftASN1
internal import X509
private import Synchronization

/// Every connection the listener accepted with a verified chain, from its handshake until it
/// closes — whether or not it has a stream open — so that a reload can check each one against
/// the new material and close those that no longer pass. A connection that sits idle between
/// calls does not escape a revocation.
///
/// Holds references to the chain NIOSSL already keeps for the connection: nothing is copied.
final class VerifiedConnections: Sendable {
  /// One open connection and the chain its handshake verified (leaf first).
  struct Entry: Sendable {
    let channel: any Channel
    let chain: NIOSSL.ValidatedCertificateChain

    /// The chain as swift-certificates sees it; `nil` if a certificate does not parse (never,
    /// for a chain this peer verified).
    var certificates: [Certificate]? {
      try? self.chain.map { try Certificate(derEncoded: try $0.toDERBytes()) }
    }
  }

  private let entries = Mutex<[ObjectIdentifier: Entry]>([:])

  init() {}

  /// Records `channel` until it closes.
  func add(_ channel: any Channel, chain: NIOSSL.ValidatedCertificateChain) {
    let id = ObjectIdentifier(channel)
    self.entries.withLock { $0[id] = Entry(channel: channel, chain: chain) }
    channel.closeFuture.whenComplete { _ in
      self.entries.withLock { _ = $0.removeValue(forKey: id) }
    }
  }

  /// The connections open now.
  var all: [Entry] { self.entries.withLock { Array($0.values) } }

  /// How many connections are open now.
  var count: Int { self.entries.withLock { $0.count } }
}
