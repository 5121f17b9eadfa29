public import X509
private import Foundation
private import Crypto
private import SwiftASN1

/// The names a certificate carries, and which one is the peer's identity.
///
/// The identity is the certificate's first DNS subject alternative name other than `localhost`
/// (else `localhost`, when that is its only DNS name); the subject's common name counts only
/// when the certificate has no subject alternative name at all. A certificate whose common name
/// says `hub` but whose DNS name says `edge2` is `edge2`, and a pin on `hub` refuses it.
public enum CertificateNames {
  /// The identity of `certificate`, or `nil` when it carries no usable name.
  ///
  /// An identity is printable ASCII, so that names compare byte for byte: a common name (a
  /// UTF-8 string) with other characters is no identity — `café` in NFC and in NFD would
  /// otherwise be one name to Swift's `==` and two to the certificate.
  public static func identity(of certificate: Certificate) -> String? {
    let name: String?
    if let dnsNames = Self.dnsNames(of: certificate) {
      name = dnsNames.first(where: { $0 != "localhost" }) ?? dnsNames.first
    } else {
      name = Self.commonName(of: certificate)
    }
    guard let name, !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else { return nil }
    return name
  }

  /// Every DNS name a certificate carries, and its common name when it has no alternative
  /// names: what a dialed host name is matched against.
  public static func names(of certificate: Certificate) -> Set<String> {
    guard let dnsNames = Self.dnsNames(of: certificate) else {
      return Set([Self.commonName(of: certificate)].compactMap { $0 })
    }
    return Set(dnsNames)
  }

  /// The subject's common name, if any.
  public static func commonName(of certificate: Certificate) -> String? {
    for rdn in certificate.subject {
      for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
        return String(describing: attribute.value)
      }
    }
    return nil
  }

  /// A name for `certificate` in messages: its identity, else its subject.
  static func describe(_ certificate: Certificate) -> String {
    Self.identity(of: certificate) ?? "\(certificate.subject)"
  }

  /// The DNS names among the subject alternative names, in order; `nil` when the certificate
  /// has no subject alternative name extension at all.
  private static func dnsNames(of certificate: Certificate) -> [String]? {
    guard let alternatives = (try? certificate.extensions.subjectAlternativeNames) ?? nil else { return nil }
    return alternatives.compactMap { name in
      if case .dnsName(let dns) = name { return dns }
      return nil
    }
  }
}

/// The SHA-256 of a certificate's public key (its DER SubjectPublicKeyInfo): what
/// "one name, one key" compares and what an allowlist entry pins, written `sha256:HEX`.
///
/// The same value as `openssl x509 -in CERT -pubkey -noout | openssl pkey -pubin -outform DER |
/// sha256sum`.
public struct KeyFingerprint: Sendable, Hashable, CustomStringConvertible {
  /// The 32 bytes of the digest.
  public var bytes: [UInt8]

  /// The fingerprint of `certificate`'s public key.
  public init(of certificate: Certificate) {
    self.init(publicKey: certificate.publicKey)
  }

  /// The fingerprint of `publicKey`.
  public init(publicKey: Certificate.PublicKey) {
    var serializer = DER.Serializer()
    // A public key always serializes; the fallback (its bare bits) is never used.
    let spki = (try? serializer.serialize(publicKey)).map { serializer.serializedBytes }
      ?? Array(publicKey.subjectPublicKeyInfoBytes)
    self.bytes = Array(SHA256.hash(data: spki))
  }

  /// Parses `sha256:HEX` (64 hex digits) or `sha256:BASE64` (44 characters), as
  /// ``description`` and HPKP-style pins write it.
  public init?(parsing text: String) {
    guard text.lowercased().hasPrefix("sha256:") else { return nil }
    let value = String(text.dropFirst("sha256:".count))
    if value.count == 64, let bytes = Self.hex(value) {
      self.bytes = bytes
    } else if let data = Data(base64Encoded: value), data.count == 32 {
      self.bytes = Array(data)
    } else {
      return nil
    }
  }

  /// `sha256:` and the digest in lowercase hex.
  public var description: String {
    "sha256:" + self.bytes.map { String(format: "%02x", $0) }.joined()
  }

  private static func hex(_ text: String) -> [UInt8]? {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
      let next = text.index(index, offsetBy: 2)
      guard let byte = UInt8(text[index ..< next], radix: 16) else { return nil }
      bytes.append(byte)
      index = next
    }
    return bytes
  }
}
