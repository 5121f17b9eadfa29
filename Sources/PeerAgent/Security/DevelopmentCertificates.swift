public import Foundation
private import Crypto
private import SwiftASN1
internal import X509

/// A development certificate authority and the peer certificates it issues.
///
/// **For development and tests only.** The CA's key is written next to its certificate; anyone
/// who can read it can mint identities for your deployment. In production bring your own CA
/// (see `certs/README.md`).
///
/// Every peer certificate is good for both roles a peer can play, listening (`serverAuth`) and
/// dialing (`clientAuth`): BoringSSL enforces the extended key usage per role, and a
/// dual-channel peer plays both. Its subject alternative names are the peer's name first (its
/// identity), then `localhost`, `127.0.0.1` and `::1`, so a peer can be reached on loopback.
///
/// ```swift
/// let ca = try DevelopmentCertificates.makeAuthority()
/// let hub = try ca.issue(name: "hub")
/// try hub.certificatePEM.write(toFile: "hub.pem", atomically: true, encoding: .utf8)
/// ```
public struct DevelopmentCertificates: Sendable {
  /// A certificate with its private key, both PEM-encoded.
  public struct Issued: Sendable, Hashable {
    /// The name the certificate was issued for (the peer's identity).
    public var name: String
    /// The certificate, PEM-encoded.
    public var certificatePEM: String
    /// The private key (PKCS #8), PEM-encoded.
    public var privateKeyPEM: String
  }

  /// The CA's own certificate and key.
  public var authority: Issued

  private let authorityCertificate: Certificate
  private let authorityKey: P256.Signing.PrivateKey

  /// Makes a new development CA.
  ///
  /// - Parameters:
  ///   - name: The CA's common name.
  ///   - validity: How long the CA certificate is valid, from now.
  /// - Returns: The CA, ready to ``issue(name:notValidBefore:notValidAfter:)`` certificates.
  public static func makeAuthority(
    name: String = "PeerAgent development CA \(String(UInt32.random(in: .min ... .max), radix: 16))",
    validity: TimeInterval = 10 * 365 * 24 * 3600
  ) throws -> Self {
    let key = P256.Signing.PrivateKey()
    let subject = try DistinguishedName {
      OrganizationName("PeerAgent (development only)")
      CommonName(name)
    }
    let now = Date()
    let certificate = try Certificate(
      version: .v3,
      serialNumber: Certificate.SerialNumber(),
      publicKey: .init(key.publicKey),
      notValidBefore: now.addingTimeInterval(-3600),
      notValidAfter: now.addingTimeInterval(validity),
      issuer: subject,
      subject: subject,
      signatureAlgorithm: .ecdsaWithSHA256,
      extensions: try Certificate.Extensions {
        Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
        Critical(KeyUsage(keyCertSign: true, cRLSign: true))
        SubjectKeyIdentifier(hash: .init(key.publicKey))
      },
      issuerPrivateKey: .init(key)
    )
    return Self(
      authority: Issued(
        name: name,
        certificatePEM: try certificate.serializeAsPEM().pemString,
        privateKeyPEM: key.pemRepresentation
      ),
      authorityCertificate: certificate,
      authorityKey: key
    )
  }

  /// Loads an existing CA from its PEM certificate and key (as written by `peer-agent certs`).
  public static func loadAuthority(certificatePEM: String, privateKeyPEM: String) throws -> Self {
    let certificate = try Certificate(pemEncoded: certificatePEM)
    let key = try P256.Signing.PrivateKey(pemRepresentation: privateKeyPEM)
    return Self(
      authority: Issued(
        name: certificate.subject.description,
        certificatePEM: certificatePEM,
        privateKeyPEM: privateKeyPEM
      ),
      authorityCertificate: certificate,
      authorityKey: key
    )
  }

  private init(authority: Issued, authorityCertificate: Certificate, authorityKey: P256.Signing.PrivateKey) {
    self.authority = authority
    self.authorityCertificate = authorityCertificate
    self.authorityKey = authorityKey
  }

  /// Issues a peer certificate for `name`, valid for listening and dialing.
  ///
  /// - Parameters:
  ///   - name: The peer's name: its identity, the certificate's first DNS name and common name.
  ///   - notValidBefore: Start of validity (default: an hour ago, to tolerate clock skew).
  ///   - notValidAfter: End of validity (default: a year from now). Tests pass a past date to
  ///     make an expired certificate.
  /// - Returns: The certificate and its new private key.
  public func issue(
    name: String,
    notValidBefore: Date = Date().addingTimeInterval(-3600),
    notValidAfter: Date = Date().addingTimeInterval(365 * 24 * 3600)
  ) throws -> Issued {
    guard Self.isValidName(name) else {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "'\(name)' is not a usable peer name: use letters, digits, '-' and '.'"
      )
    }
    let key = P256.Signing.PrivateKey()
    var names: [GeneralName] = [.dnsName(name)]
    if name != "localhost" { names.append(.dnsName("localhost")) }
    names.append(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])))
    names.append(.ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])))
    let certificate = try Certificate(
      version: .v3,
      serialNumber: Certificate.SerialNumber(),
      publicKey: .init(key.publicKey),
      notValidBefore: notValidBefore,
      notValidAfter: notValidAfter,
      issuer: self.authorityCertificate.subject,
      subject: try DistinguishedName { CommonName(name) },
      signatureAlgorithm: .ecdsaWithSHA256,
      extensions: try Certificate.Extensions {
        Critical(BasicConstraints.notCertificateAuthority)
        Critical(KeyUsage(digitalSignature: true))
        try ExtendedKeyUsage([.serverAuth, .clientAuth])
        SubjectAlternativeNames(names)
        SubjectKeyIdentifier(hash: .init(key.publicKey))
      },
      issuerPrivateKey: .init(self.authorityKey)
    )
    return Issued(
      name: name,
      certificatePEM: try certificate.serializeAsPEM().pemString,
      privateKeyPEM: key.pemRepresentation
    )
  }

  /// Whether `name` can be a peer name: a DNS label sequence (letters, digits, `-`, `.`).
  public static func isValidName(_ name: String) -> Bool {
    !name.isEmpty && name.count <= 253
      && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }
      && !name.hasPrefix(".") && !name.hasSuffix(".") && !name.hasPrefix("-")
  }
}

extension DevelopmentCertificates {
  /// Writes a development CA and one certificate and key per name into `directory`:
  /// `ca.pem`, `ca-key.pem`, `NAME.pem` and `NAME-key.pem`. Keys are readable by the owner only.
  ///
  /// An existing `ca.pem` and `ca-key.pem` in `directory` are reused, so peers added later
  /// chain to the same CA.
  ///
  /// - Returns: The paths written, in order.
  @discardableResult
  public static func write(names: [String], to directory: String) throws -> [String] {
    let files = FileManager.default
    try PrivateFiles.makeFolder(directory)
    let folder = CertificateDirectory(directory)
    let caPath = folder.authorityCertificate
    let caKeyPath = folder.authorityKey
    var written: [String] = []

    let authority: Self
    if files.fileExists(atPath: caPath), files.fileExists(atPath: caKeyPath) {
      authority = try Self.loadAuthority(
        certificatePEM: String(contentsOfFile: caPath, encoding: .utf8),
        privateKeyPEM: String(contentsOfFile: caKeyPath, encoding: .utf8)
      )
    } else {
      authority = try Self.makeAuthority()
      try Self.writeFile(authority.authority.certificatePEM, to: caPath, mode: 0o644)
      try Self.writeFile(authority.authority.privateKeyPEM, to: caKeyPath, mode: 0o600)
      written += [caPath, caKeyPath]
    }

    for name in names {
      let issued = try authority.issue(name: name)
      let certPath = folder.certificate(for: name)
      let keyPath = folder.privateKey(for: name)
      try Self.writeFile(issued.certificatePEM, to: certPath, mode: 0o644)
      try Self.writeFile(issued.privateKeyPEM, to: keyPath, mode: 0o600)
      written += [certPath, keyPath]
    }
    return written
  }

  private static func writeFile(_ contents: String, to path: String, mode: Int) throws {
    try PrivateFiles.write(contents, to: path, mode: mode)
  }

}
