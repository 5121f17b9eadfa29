public import Foundation
internal import SwiftASN1
@_spi(FixedExpiryValidationTime) public import X509

/// Verifies a presented certificate chain against the deployment's CA, with a reason a person
/// can act on when it fails.
///
/// Chains are built and checked by swift-certificates' `Verifier`, with PeerAgent's own
/// ``PeerAgentPolicy`` (validity, key usage and extended key usage per role, the leaf not a CA,
/// the strict X.509 profile) followed by `RFC5280Policy` (path length, name constraints,
/// versions); unknown critical extensions are refused. Then the revocation lists, and the pin a
/// dialer gave. BoringSSL's own verification only says `CERTIFICATE_VERIFY_FAILED`; this runs in
/// its place through NIOSSL's custom verification callback.
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

  /// A chain that verified: who presented it, with which key.
  public struct Verified: Sendable, Hashable {
    /// The identity of the leaf (``CertificateNames/identity(of:)``).
    public var identity: PeerIdentity
    /// The fingerprint of the leaf's public key.
    public var key: KeyFingerprint
    /// The verified chain, leaf first, ending with the trust root.
    public var chain: [Certificate]
  }

  /// The certificates trusted as roots (the deployment's CA).
  public var trustRoots: [Certificate]
  /// The revocation lists of those CAs: a certificate they revoke is refused.
  public var revocationLists: [RevocationList]

  /// Creates a verifier that trusts `trustRoots` and nothing else, and refuses what
  /// `revocationLists` revoke.
  public init(trustRoots: [Certificate], revocationLists: [RevocationList] = []) {
    self.trustRoots = trustRoots
    self.revocationLists = revocationLists
  }

  /// Verifies `chain` (leaf first) and returns the leaf's identity.
  ///
  /// - Parameters:
  ///   - chain: The presented certificates, leaf first, then any intermediates.
  ///   - presentedBy: Which role presented them (decides the required extended key usage).
  ///   - expectedIdentity: If set, the leaf's identity must be this name.
  ///   - now: The time to check validity against.
  /// - Returns: The verified identity of the leaf.
  /// - Throws: ``Failure`` with the reason.
  public func verify(
    chain: [Certificate],
    presentedBy: PresentedBy,
    expectedIdentity: String? = nil,
    now: Date = Date()
  ) async throws(Failure) -> PeerIdentity {
    try await self.check(chain: chain, presentedBy: presentedBy, expectedIdentity: expectedIdentity, now: now).identity
  }

  /// Verifies `chain` (leaf first) and returns who presented it, with which key; as
  /// ``verify(chain:presentedBy:expectedIdentity:now:)``.
  public func check(
    chain: [Certificate],
    presentedBy: PresentedBy,
    expectedIdentity: String? = nil,
    now: Date = Date()
  ) async throws(Failure) -> Verified {
    guard let leaf = chain.first else {
      throw Failure("no certificate was presented")
    }
    guard let name = CertificateNames.identity(of: leaf) else {
      throw Failure(
        "certificate '\(leaf.subject)' carries no usable name: its identity (its first DNS name, else its common name) must be printable ASCII (an internationalized name as its A-label, xn--…)"
      )
    }
    let policy = PeerAgentPolicy(presentedBy: presentedBy, now: now)
    // The leaf's own faults first, in plain words.
    if let refusal = policy.refusal(of: leaf, as: .leaf) {
      throw Failure(refusal)
    }
    if let unknown = Self.unhandledCriticalExtension(of: leaf) {
      throw Failure("certificate '\(name)' has a critical extension PeerAgent does not understand (\(unknown))")
    }

    var verifier = Verifier(rootCertificates: CertificateStore(self.trustRoots)) {
      policy
      RFC5280Policy(fixedExpiryValidationTime: now)
    }
    let verified: [Certificate]
    switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(chain.dropFirst())) {
    case .validCertificate(let valid):
      verified = Array(valid)
    case .couldNotValidate(let failures):
      if let failure = failures.first {
        let reason = Self.shortened(failure.policyFailureReason.description)
        throw Failure(reason.hasPrefix("RFC5280Policy: ") ? "certificate '\(name)' was refused: \(reason.dropFirst(15))" : reason)
      }
      if let intermediate = chain.dropFirst().first(where: { Self.unhandledCriticalExtension(of: $0) != nil }) {
        throw Failure(
          "intermediate certificate '\(intermediate.subject)' has a critical extension PeerAgent does not understand (\(Self.unhandledCriticalExtension(of: intermediate)!))"
        )
      }
      throw Failure("certificate '\(name)' (issued by '\(leaf.issuer)') does not chain to the configured CA")
    }

    for certificate in verified.dropLast() {
      if let list = self.revocationLists.first(where: { $0.revokes(certificate) }) {
        let which = certificate == leaf ? "certificate '\(name)'" : "intermediate certificate '\(certificate.subject)'"
        throw Failure("\(which) is revoked (serial \(certificate.serialNumber), by the revocation list of '\(list.issuer)')")
      }
    }
    // The pin is matched against the identity only: a certificate whose common name is the
    // pinned name but whose identity (its first DNS name) is another peer's is refused.
    if let expected = expectedIdentity, expected != name {
      throw Failure("expected peer '\(expected)' but the certificate presented is '\(name)'")
    }
    return Verified(identity: .verified(name), key: KeyFingerprint(of: leaf), chain: verified)
  }

  /// The extensions the two policies process: a certificate marking any other critical is
  /// refused, as RFC 5280 requires.
  static let handledCriticalExtensions =
    PeerAgentPolicy.handledExtensions + RFC5280Policy(fixedExpiryValidationTime: Date()).verifyingCriticalExtensions

  private static func unhandledCriticalExtension(of certificate: Certificate) -> ASN1ObjectIdentifier? {
    certificate.extensions.first { $0.critical && !Self.handledCriticalExtensions.contains($0.oid) }?.oid
  }

  /// `RFC5280Policy`'s reasons print whole certificates; a subject says enough.
  private static func shortened(_ reason: String) -> String {
    var text = reason
    while let start = text.range(of: "Certificate(version:") {
      guard let subjectStart = text.range(of: "subject: \"", range: start.upperBound ..< text.endIndex),
        let subjectEnd = text.range(of: "\"", range: subjectStart.upperBound ..< text.endIndex),
        let end = text.range(of: "])", range: subjectEnd.upperBound ..< text.endIndex)
      else { break }
      let subject = text[subjectStart.upperBound ..< subjectEnd.lowerBound]
      text.replaceSubrange(start.lowerBound ..< end.upperBound, with: "'\(subject)'")
    }
    return text
  }
}
