/// Who a remote peer is.
///
/// With mutual TLS, the identity is the name in the peer's *verified* certificate: its first DNS
/// subject alternative name other than `localhost`, else `localhost`, else the subject's common
/// name. It is never taken from anything the peer says in a message.
///
/// Without TLS (`--insecure`) nothing is verified: the link is named by the remote address and
/// ``isVerified`` is `false`.
public struct PeerIdentity: Hashable, Sendable, CustomStringConvertible {
  /// The peer's name: from its certificate, or its address when unverified.
  public var name: String
  /// Whether ``name`` comes from a certificate that chained to the configured CA.
  public var isVerified: Bool

  /// Creates an identity.
  public init(name: String, isVerified: Bool) {
    self.name = name
    self.isVerified = isVerified
  }

  /// An identity verified by mutual TLS.
  public static func verified(_ name: String) -> Self {
    Self(name: name, isVerified: true)
  }

  /// An unverified identity: a plaintext link named by its remote address.
  public static func unverified(address: String) -> Self {
    Self(name: address, isVerified: false)
  }

  /// The name.
  public var description: String { self.name }
}
