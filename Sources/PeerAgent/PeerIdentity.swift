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
  /// For a remote dialed as a failover list of hubs (``Peer/Target/failover``), which is one
  /// remote named by the list (`hub-2,hub-1`): the hub this link reached — the name in its
  /// verified certificate (in plaintext, the name the list gives it). `nil` otherwise.
  ///
  /// Not part of the identity's equality: whichever hub a link reaches, it is the same remote.
  public var hub: String?

  /// Creates an identity.
  public init(name: String, isVerified: Bool, hub: String? = nil) {
    self.name = name
    self.isVerified = isVerified
    self.hub = hub
  }

  public static func == (lhs: Self, rhs: Self) -> Bool {
    lhs.name == rhs.name && lhs.isVerified == rhs.isVerified
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(self.name)
    hasher.combine(self.isVerified)
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
