internal import Foundation
internal import SwiftASN1
internal import X509

/// PeerAgent's own rules for a candidate chain, run by swift-certificates' `Verifier` before
/// its `RFC5280Policy` (which polices path length, name constraints and versions): the
/// certificates are valid now, each has the key usages and extended key usages its place in the
/// chain needs, and the chain keeps the strict profile OpenSSL's `-x509_strict` keeps — so that
/// PeerAgent's verdict on a chain is OpenSSL's (see the differential test).
///
/// Every refusal is a sentence for the user, naming the certificate.
struct PeerAgentPolicy: VerifierPolicy {
  /// Which side presented the chain: decides the extended key usage every certificate of the
  /// chain must allow (when it restricts them) and the key usage of the leaf.
  var presentedBy: CertificateVerifier.PresentedBy
  /// The time validity is checked against.
  var now: Date

  /// The extended key usage, key usage and subject alternative names are policed here;
  /// RFC5280Policy polices basic constraints and name constraints.
  static let handledExtensions: [ASN1ObjectIdentifier] = [
    .X509ExtensionID.extendedKeyUsage,
    .X509ExtensionID.subjectAlternativeName,
    .X509ExtensionID.keyUsage,
  ]

  var verifyingCriticalExtensions: [ASN1ObjectIdentifier] { Self.handledExtensions }

  func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
    let certificates = Array(chain)
    for (index, certificate) in certificates.enumerated() {
      let role: Place = index == 0 ? .leaf : (index == certificates.count - 1 ? .root : .intermediate)
      if let refusal = self.refusal(of: certificate, as: role) {
        return .failsToMeetPolicy(reason: refusal)
      }
    }
    return .meetsPolicy
  }

  /// Where a certificate sits in the chain.
  enum Place {
    case leaf, intermediate, root

    func name(of certificate: Certificate) -> String {
      switch self {
      case .leaf: return "certificate '\(CertificateNames.describe(certificate))'"
      case .intermediate: return "intermediate certificate '\(certificate.subject)'"
      case .root: return "CA certificate '\(certificate.subject)'"
      }
    }
  }

  /// Why `certificate`, at `place`, breaks a rule; `nil` when it keeps them all.
  func refusal(of certificate: Certificate, as place: Place) -> String? {
    let name = place.name(of: certificate)
    if let problem = Self.validityProblem(certificate, now: self.now) {
      return "\(name) \(problem)"
    }
    let extensions = certificate.extensions
    let basic: BasicConstraints?
    let keyUsage: KeyUsage?
    let extendedKeyUsage: ExtendedKeyUsage?
    do {
      basic = try extensions.basicConstraints
      keyUsage = try extensions.keyUsage
      extendedKeyUsage = try extensions.extendedKeyUsage
    } catch {
      return "\(name) has an extension that cannot be parsed (\(error))"
    }
    // Extended key usage: when a certificate restricts it, it must allow this role — on the
    // leaf and on every CA above it, as OpenSSL requires.
    if let extendedKeyUsage, !extendedKeyUsage.contains(self.requiredUsage) {
      let role = self.presentedBy == .listener ? "listen (serverAuth)" : "dial (clientAuth)"
      return place == .leaf
        ? "\(name) is not allowed to \(role): its extended key usage lacks it"
        : "\(name) is not allowed to issue certificates that \(role): its extended key usage lacks it"
    }
    let isCA: Bool
    if case .isCertificateAuthority = basic { isCA = true } else { isCA = false }
    switch place {
    case .leaf:
      if isCA {
        return "\(name) is a CA certificate (basicConstraints CA:TRUE): a peer's certificate must not be a CA"
      }
      if let keyUsage, !self.leafKeyUsageAllowed(keyUsage) {
        return "\(name) does not allow digital signatures: its key usage lacks digitalSignature"
      }
      if certificate.issuer != certificate.subject, extensions.authorityKeyIdentifierPresent == false {
        return "\(name) has no authority key identifier (required by the strict X.509 profile)"
      }
    case .intermediate, .root:
      guard isCA else { return "\(name) is not a CA certificate (basicConstraints CA:TRUE is missing)" }
      guard let keyUsage else { return "\(name) has no key usage extension (a CA must allow keyCertSign)" }
      guard keyUsage.keyCertSign else { return "\(name) does not allow signing certificates: its key usage lacks keyCertSign" }
      if extensions.basicConstraintsCritical == false {
        return "\(name) does not mark its basic constraints critical (required of a CA)"
      }
      if (try? extensions.subjectKeyIdentifier) == nil {
        return "\(name) has no subject key identifier (required of a CA by the strict X.509 profile)"
      }
      if place == .intermediate, extensions.authorityKeyIdentifierPresent == false {
        return "\(name) has no authority key identifier (required by the strict X.509 profile)"
      }
    }
    return nil
  }

  private var requiredUsage: ExtendedKeyUsage.Usage {
    self.presentedBy == .listener ? .serverAuth : .clientAuth
  }

  private func leafKeyUsageAllowed(_ usage: KeyUsage) -> Bool {
    switch self.presentedBy {
    case .listener: return usage.digitalSignature || usage.keyEncipherment || usage.keyAgreement
    case .dialer: return usage.digitalSignature || usage.keyAgreement
    }
  }

  /// "expired on …" or "is not valid before …", or `nil` when `certificate` is valid at `now`.
  static func validityProblem(_ certificate: Certificate, now: Date) -> String? {
    let formatter = ISO8601DateFormatter()
    if now > certificate.notValidAfter {
      return "expired on \(formatter.string(from: certificate.notValidAfter))"
    }
    if now < certificate.notValidBefore {
      return "is not valid before \(formatter.string(from: certificate.notValidBefore))"
    }
    return nil
  }
}

extension Certificate.Extensions {
  fileprivate var basicConstraintsCritical: Bool? {
    self[oid: .X509ExtensionID.basicConstraints]?.critical
  }

  fileprivate var authorityKeyIdentifierPresent: Bool {
    self[oid: .X509ExtensionID.authorityKeyIdentifier] != nil
  }
}
