public import Foundation
private import Crypto
private import SwiftASN1
public import X509

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

  /// The CA's key identifier, named by every certificate it issues (the strict X.509 profile
  /// OpenSSL's `-x509_strict` checks requires it).
  private var authorityKeyIdentifier: ArraySlice<UInt8> {
    if let identifier = (try? self.authorityCertificate.extensions.subjectKeyIdentifier)??.keyIdentifier {
      return identifier
    }
    return SubjectKeyIdentifier(hash: self.authorityCertificate.publicKey).keyIdentifier
  }

  /// A certificate revocation list (RFC 5280 §5, PEM) signed by this CA that revokes the
  /// certificates with `serials`, valid for `validity` from now: what `--revoked FILE` reads.
  public func revocationListPEM(
    revoking serials: [Certificate.SerialNumber],
    validity: TimeInterval = 30 * 24 * 3600
  ) throws -> String {
    try self.revocationListPEM(revoking: serials, validity: validity, shape: RevocationListShape())
  }

  /// What a revocation list may carry beyond what ``revocationListPEM(revoking:validity:)``
  /// writes: for tests of lists RFC 5280 says to refuse.
  package struct RevocationListShape: Sendable {
    /// More list extensions.
    package var extensions: [Certificate.Extension] = []
    /// Extensions on every entry.
    package var entryExtensions: [Certificate.Extension] = []
    /// The algorithm named inside tbsCertList, if not the one that signed it.
    package var innerAlgorithm: [UInt]?
    /// How far from now `thisUpdate` is (it is a minute ago by default).
    package var thisUpdateOffset: TimeInterval = -60

    package init() {}
  }

  package func revocationListPEM(
    revoking serials: [Certificate.SerialNumber],
    validity: TimeInterval = 30 * 24 * 3600,
    shape: RevocationListShape
  ) throws -> String {
    let now = Date()
    var tbs = DER.Serializer()
    try tbs.appendConstructedNode(identifier: .sequence) { list in
      try list.serialize(1)  // v2
      try list.appendConstructedNode(identifier: .sequence) { algorithm in
        try algorithm.serialize(try ASN1ObjectIdentifier(elements: shape.innerAlgorithm ?? [1, 2, 840, 10045, 4, 3, 2]))
      }
      try list.serialize(self.authorityCertificate.subject)
      try list.serialize(try UTCTime(now.addingTimeInterval(shape.thisUpdateOffset)))
      try list.serialize(try UTCTime(now.addingTimeInterval(validity)))
      if !serials.isEmpty {
        try list.appendConstructedNode(identifier: .sequence) { entries in
          for serial in serials {
            try entries.appendConstructedNode(identifier: .sequence) { entry in
              try entry.serialize(serial.bytes)
              try entry.serialize(try UTCTime(now.addingTimeInterval(-60)))
              if !shape.entryExtensions.isEmpty {
                try entry.appendConstructedNode(identifier: .sequence) { extensions in
                  for item in shape.entryExtensions { try extensions.serialize(item) }
                }
              }
            }
          }
        }
      }
      try list.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { extensions in
        try extensions.appendConstructedNode(identifier: .sequence) { sequence in
          try sequence.serialize(
            try Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: self.authorityKeyIdentifier), critical: false)
          )
          var number = DER.Serializer()
          try number.serialize(Int(now.timeIntervalSince1970))
          try sequence.serialize(
            Certificate.Extension(oid: [2, 5, 29, 20], critical: false, value: number.serializedBytes[...])
          )
          for item in shape.extensions { try sequence.serialize(item) }
        }
      }
    }
    let tbsBytes = tbs.serializedBytes
    let signature = try self.authorityKey.signature(for: tbsBytes).derRepresentation
    var crl = DER.Serializer()
    try crl.appendConstructedNode(identifier: .sequence) { list in
      list.serializeRawBytes(tbsBytes)
      try list.appendConstructedNode(identifier: .sequence) { algorithm in
        try algorithm.serialize(ASN1ObjectIdentifier(arrayLiteral: 1, 2, 840, 10045, 4, 3, 2))
      }
      try list.serialize(ASN1BitString(bytes: Array(signature)[...]))
    }
    return PEMDocument(type: "X509 CRL", derBytes: crl.serializedBytes).pemString
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
        AuthorityKeyIdentifier(keyIdentifier: self.authorityKeyIdentifier)
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
  /// - Parameter force: Replace the certificate and key of a name that has them; without it an
  ///   existing key is never overwritten (the call fails before writing anything).
  @discardableResult
  public static func write(names: [String], to directory: String, force: Bool = false) throws -> [String] {
    let files = FileManager.default
    let folder = CertificateDirectory(directory)
    let existing = names.filter { files.fileExists(atPath: folder.privateKey(for: $0)) }
    if !force, !existing.isEmpty {
      let new = names.filter { !existing.contains($0) }
      let keys = existing.map { folder.privateKey(for: $0) }.joined(separator: ", ")
      let add = new.isEmpty ? "" : "to add only the new ones, run with --names \(new.joined(separator: ",")); "
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "\(keys) \(existing.count == 1 ? "exists" : "exist"): a key is never overwritten. \(add)add --force to issue new certificates and keys for \(existing.joined(separator: ", ")) (peers that pin the old keys must then be updated)"
      )
    }
    try PrivateFiles.makeFolder(directory)
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

  /// Copies what the host of peer `name` needs — `ca.pem`, `NAME.pem` and `NAME-key.pem`,
  /// never the CA's key — from the certificate folder `source` into `destination` (created
  /// owner-only; the key 0600).
  ///
  /// - Returns: The paths written.
  @discardableResult
  public static func export(name: String, from source: String, to destination: String, force: Bool = false) throws -> [String] {
    let from = CertificateDirectory(source)
    let to = CertificateDirectory(destination)
    let files = FileManager.default
    let pairs = [
      (from.authorityCertificate, to.authorityCertificate, 0o644),
      (from.certificate(for: name), to.certificate(for: name), 0o644),
      (from.privateKey(for: name), to.privateKey(for: name), 0o600),
    ]
    for (path, _, _) in pairs where !files.fileExists(atPath: path) {
      throw PeerAgentError(code: .invalidConfiguration, message: "\(path) not found: is \(source) a certificate folder with '\(name)'?")
    }
    if !force, files.fileExists(atPath: to.privateKey(for: name)) {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "\(to.privateKey(for: name)) exists: a key is never overwritten; add --force to replace it"
      )
    }
    try PrivateFiles.makeFolder(destination)
    var written: [String] = []
    for (path, target, mode) in pairs {
      try Self.writeFile(try String(contentsOfFile: path, encoding: .utf8), to: target, mode: mode)
      written.append(target)
    }
    return written
  }

  /// Adds the certificates of `names` in the certificate folder `directory` to its revocation
  /// list, `revoked.pem` (made if missing), signed by the folder's CA; what `--revoked` reads.
  ///
  /// - Returns: The path of the list.
  @discardableResult
  public static func revoke(names: [String], in directory: String) throws -> String {
    let folder = CertificateDirectory(directory)
    let caPath = folder.authorityCertificate
    let caKeyPath = folder.authorityKey
    guard FileManager.default.fileExists(atPath: caKeyPath) else {
      throw PeerAgentError(code: .invalidConfiguration, message: "\(caKeyPath) not found: only the folder with the CA's key can revoke")
    }
    let authority = try Self.loadAuthority(
      certificatePEM: String(contentsOfFile: caPath, encoding: .utf8),
      privateKeyPEM: String(contentsOfFile: caKeyPath, encoding: .utf8)
    )
    let listPath = folder.revocationList
    var serials: [Certificate.SerialNumber] = []
    if let data = FileManager.default.contents(atPath: listPath) {
      for list in try RevocationList.read(Array(data), signedBy: [authority.authorityCertificate]) {
        serials.append(contentsOf: list.revokedSerials)
      }
    }
    for name in names {
      let path = folder.certificate(for: name)
      guard FileManager.default.fileExists(atPath: path) else {
        throw PeerAgentError(code: .invalidConfiguration, message: "\(path) not found: no certificate for '\(name)'")
      }
      let certificate = try Certificate(pemEncoded: String(contentsOfFile: path, encoding: .utf8))
      if !serials.contains(certificate.serialNumber) { serials.append(certificate.serialNumber) }
    }
    try Self.writeFile(try authority.revocationListPEM(revoking: serials), to: listPath, mode: 0o644)
    return listPath
  }

  private static func writeFile(_ contents: String, to path: String, mode: Int) throws {
    try PrivateFiles.write(contents, to: path, mode: mode)
  }

}

extension UTCTime {
  /// The UTC time of `date`, to the second.
  fileprivate init(_ date: Date) throws {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
    try self.init(
      year: parts.year!, month: parts.month!, day: parts.day!,
      hours: parts.hour!, minutes: parts.minute!, seconds: parts.second!
    )
  }
}
