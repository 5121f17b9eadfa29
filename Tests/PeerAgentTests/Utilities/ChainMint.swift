import Crypto
import Foundation
import SwiftASN1
import X509

import PeerAgent

/// Certificates with exactly the extensions a test asks for: the corpus of chains the
/// verifier is compared with OpenSSL on.
struct ChainMint {
  /// A CA: its certificate and key.
  struct Authority {
    var certificate: Certificate
    var key: P256.Signing.PrivateKey

    init(certificate: Certificate, key: P256.Signing.PrivateKey) {
      self.certificate = certificate
      self.key = key
    }

    /// The CA of a certificate folder `peer-agent certs` wrote (`ca.pem`, `ca-key.pem`).
    init(_ folder: CertificateDirectory) throws {
      self.certificate = try Certificate(pemEncoded: String(contentsOfFile: folder.authorityCertificate, encoding: .utf8))
      self.key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: folder.authorityKey, encoding: .utf8))
    }
  }

  /// What one certificate carries. The defaults make a good CA (`isCA`) or a good peer
  /// certificate.
  struct Spec {
    var name: String
    var isCA = false
    var pathLength: Int? = nil
    var basicConstraintsCritical = true
    /// `nil`: no key usage extension.
    var keyUsage: KeyUsage?
    /// `nil`: no extended key usage extension.
    var extendedKeyUsage: [ExtendedKeyUsage.Usage]? = nil
    var nameConstraints: NameConstraints? = nil
    var notValidBefore = Date().addingTimeInterval(-3600)
    var notValidAfter = Date().addingTimeInterval(86_400)
    var unknownCriticalExtension = false
    var authorityKeyIdentifier = true
    var subjectKeyIdentifier = true
    /// DNS names (default: the name).
    var dnsNames: [String]? = nil
    var commonName: String? = nil
    /// Whether a peer's certificate carries subject alternative names at all.
    var subjectAlternativeNames = true

    static func ca(_ name: String) -> Self {
      Spec(name: name, isCA: true, keyUsage: KeyUsage(keyCertSign: true, cRLSign: true))
    }

    static func peer(_ name: String) -> Self {
      Spec(name: name, keyUsage: KeyUsage(digitalSignature: true), extendedKeyUsage: [.serverAuth, .clientAuth])
    }
  }

  /// A self-signed root.
  static func root(_ spec: Spec) throws -> Authority {
    let key = P256.Signing.PrivateKey()
    let certificate = try self.make(spec, key: key.publicKey, issuer: nil, signer: key)
    return Authority(certificate: certificate, key: key)
  }

  /// An intermediate CA issued by `issuer`.
  static func intermediate(_ spec: Spec, issuer: Authority) throws -> Authority {
    let key = P256.Signing.PrivateKey()
    let certificate = try self.make(spec, key: key.publicKey, issuer: issuer, signer: issuer.key)
    return Authority(certificate: certificate, key: key)
  }

  /// A certificate issued by `issuer`, signed by `signer` (default: the issuer's key; another
  /// key makes a wrong signature).
  static func leaf(_ spec: Spec, issuer: Authority, signer: P256.Signing.PrivateKey? = nil) throws -> Certificate {
    try self.make(spec, key: P256.Signing.PrivateKey().publicKey, issuer: issuer, signer: signer ?? issuer.key)
  }

  /// A certificate issued by `issuer`, with its private key.
  static func issueWithKey(_ spec: Spec, issuer: Authority) throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
    let key = P256.Signing.PrivateKey()
    return (try self.make(spec, key: key.publicKey, issuer: issuer, signer: issuer.key), key)
  }

  private static func make(
    _ spec: Spec,
    key: P256.Signing.PublicKey,
    issuer: Authority?,
    signer: P256.Signing.PrivateKey
  ) throws -> Certificate {
    let subject = try DistinguishedName { CommonName(spec.commonName ?? spec.name) }
    var extensions = Certificate.Extensions()
    let basic: BasicConstraints = spec.isCA
      ? .isCertificateAuthority(maxPathLength: spec.pathLength) : .notCertificateAuthority
    try extensions.append(Certificate.Extension(basic, critical: spec.basicConstraintsCritical))
    if let usage = spec.keyUsage { try extensions.append(Certificate.Extension(usage, critical: true)) }
    if let usages = spec.extendedKeyUsage {
      try extensions.append(Certificate.Extension(try ExtendedKeyUsage(usages), critical: false))
    }
    if (!spec.isCA && spec.subjectAlternativeNames) || spec.dnsNames != nil {
      let names = (spec.dnsNames ?? [spec.name]).map { GeneralName.dnsName($0) }
      try extensions.append(Certificate.Extension(SubjectAlternativeNames(names), critical: false))
    }
    if let constraints = spec.nameConstraints {
      try extensions.append(Certificate.Extension(constraints, critical: true))
    }
    if spec.subjectKeyIdentifier {
      try extensions.append(Certificate.Extension(SubjectKeyIdentifier(hash: .init(key)), critical: false))
    }
    if spec.authorityKeyIdentifier, let issuer {
      let identifier = try issuer.certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        ?? SubjectKeyIdentifier(hash: issuer.certificate.publicKey).keyIdentifier
      try extensions.append(
        Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: identifier), critical: false)
      )
    }
    if spec.unknownCriticalExtension {
      try extensions.append(Certificate.Extension(oid: [1, 3, 6, 1, 4, 1, 55555, 7], critical: true, value: [0x05, 0x00]))
    }
    return try Certificate(
      version: .v3,
      serialNumber: Certificate.SerialNumber(),
      publicKey: .init(key),
      notValidBefore: spec.notValidBefore,
      notValidAfter: spec.notValidAfter,
      issuer: issuer?.certificate.subject ?? subject,
      subject: subject,
      signatureAlgorithm: .ecdsaWithSHA256,
      extensions: extensions,
      issuerPrivateKey: .init(signer)
    )
  }
}

extension Certificate {
  /// The certificate in PEM, with a final newline (so that several concatenate into a chain).
  var pem: String { ((try? self.serializeAsPEM().pemString) ?? "") + "\n" }
}
