public import Foundation
private import SwiftASN1
public import X509

/// Verifies a presented certificate chain against the deployment's CA, with a reason a person
/// can act on when it fails.
///
/// BoringSSL's own verification only says `CERTIFICATE_VERIFY_FAILED`; this verifier runs in
/// its place (through NIOSSL's custom verification callback) and tells expired from untrusted
/// from wrong-purpose, and checks the identity a dialer pinned. It is synchronous, so the TLS
/// handshake is never parked on another thread.
public struct CertificateVerifier: Sendable {
  /// Which side of the connection presented the chain: a certificate presented by a listener
  /// must allow `serverAuth`, one presented by a dialer `clientAuth`.
  public enum PresentedBy: Sendable, Hashable {
    /// A listener, to a dialer: its certificate must allow serverAuth.
    case listener
    /// A dialer, to a listener: its certificate must allow clientAuth.
    case dialer
  }

  /// Why a chain was refused.
  public struct Failure: Error, Hashable, Sendable, CustomStringConvertible {
    /// Why, in words for the user.
    public var description: String
    /// A refusal for the reason `description`.
    public init(_ description: String) { self.description = description }
  }

  /// The certificates trusted as roots (the deployment's CA).
  public var trustRoots: [Certificate]

  /// Creates a verifier that trusts `trustRoots` and nothing else.
  public init(trustRoots: [Certificate]) {
    self.trustRoots = trustRoots
  }

  /// Verifies `chain` (leaf first) and returns the leaf's identity.
  ///
  /// - Parameters:
  ///   - chain: The presented certificates, leaf first, then any intermediates.
  ///   - presentedBy: Which role presented them (decides the required extended key usage).
  ///   - expectedIdentity: If set, the leaf's identity (``identityName(of:)``) must be this name.
  ///   - now: The time to check validity against.
  /// - Returns: The verified identity of the leaf.
  /// - Throws: ``Failure`` with the reason.
  public func verify(
    chain: [Certificate],
    presentedBy: PresentedBy,
    expectedIdentity: String? = nil,
    now: Date = Date()
  ) throws(Failure) -> PeerIdentity {
    guard let leaf = chain.first else {
      throw Failure("no certificate was presented")
    }
    let name = Self.identityName(of: leaf) ?? leaf.subject.description
    try Self.checkValidity(leaf, name: "certificate '\(name)'", now: now)

    if let usage = try? leaf.extensions.extendedKeyUsage {
      let required: ExtendedKeyUsage.Usage = presentedBy == .listener ? .serverAuth : .clientAuth
      if !usage.contains(required) && !usage.contains(.any) {
        let role = presentedBy == .listener ? "listen (serverAuth)" : "dial (clientAuth)"
        throw Failure(
          "certificate '\(name)' is not allowed to \(role): its extended key usage lacks it"
        )
      }
    }

    // Walk up: each certificate must be signed by the next, until one is signed by a root.
    var current = leaf
    var remaining = Array(chain.dropFirst())
    for _ in 0 ..< 8 {
      if let root = self.trustRoots.first(where: {
        $0.subject == current.issuer && $0.publicKey.isValidSignature(current.signature, for: current)
      }) {
        try Self.checkValidity(root, name: "CA certificate '\(root.subject)'", now: now)
        // The pin is matched against the identity only: a certificate whose common name is
        // the pinned name but whose identity (its first DNS name) is another peer's is refused.
        if let expected = expectedIdentity, expected != name {
          throw Failure("expected peer '\(expected)' but the certificate presented is '\(name)'")
        }
        return .verified(name)
      }
      guard
        let index = remaining.firstIndex(where: {
          $0.subject == current.issuer
            && $0.publicKey.isValidSignature(current.signature, for: current)
            && Self.isCA($0)
        })
      else { break }
      current = remaining.remove(at: index)
      try Self.checkValidity(current, name: "intermediate certificate '\(current.subject)'", now: now)
    }
    throw Failure(
      "certificate '\(name)' (issued by '\(current.issuer)') does not chain to the configured CA"
    )
  }

  private static func isCA(_ certificate: Certificate) -> Bool {
    guard let constraints = try? certificate.extensions.basicConstraints else { return false }
    if case .isCertificateAuthority = constraints { return true }
    return false
  }

  private static func checkValidity(_ certificate: Certificate, name: String, now: Date) throws(Failure) {
    let formatter = ISO8601DateFormatter()
    if now > certificate.notValidAfter {
      throw Failure("\(name) expired on \(formatter.string(from: certificate.notValidAfter))")
    }
    if now < certificate.notValidBefore {
      throw Failure(
        "\(name) is not valid before \(formatter.string(from: certificate.notValidBefore))"
      )
    }
  }

  /// The identity of a certificate: its first DNS subject alternative name other than
  /// `localhost`, else `localhost`, else its subject's common name.
  public static func identityName(of certificate: Certificate) -> String? {
    let dnsNames = Self.dnsNames(of: certificate)
    if let name = dnsNames.first(where: { $0 != "localhost" }) ?? dnsNames.first {
      return name
    }
    return Self.commonName(of: certificate)
  }

  /// Every name a certificate carries: its DNS names and its common name.
  public static func names(of certificate: Certificate) -> Set<String> {
    var names = Set(Self.dnsNames(of: certificate))
    if let commonName = Self.commonName(of: certificate) { names.insert(commonName) }
    return names
  }

  private static func dnsNames(of certificate: Certificate) -> [String] {
    guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
    return names.compactMap { name in
      if case .dnsName(let dns) = name { return dns }
      return nil
    }
  }

  private static func commonName(of certificate: Certificate) -> String? {
    for rdn in certificate.subject {
      for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
        return String(describing: attribute.value)
      }
    }
    return nil
  }
}
