public import Foundation
internal import SwiftASN1
public import X509

/// The certificates a CA has revoked, read from a certificate revocation list (RFC 5280 §5, PEM
/// or DER) and checked against the CA that signed it.
///
/// swift-certificates reads no CRLs, so this parses the one structure it needs: the issuer, the
/// validity and the revoked serial numbers, with the CA's signature over them.
public struct RevocationList: Sendable, Hashable {
  /// The CA that issued the list.
  public var issuer: DistinguishedName
  /// When the list was issued.
  public var thisUpdate: Date
  /// When the next list is due, if the list says.
  public var nextUpdate: Date?
  /// The serial numbers it revokes.
  public var revokedSerials: Set<Certificate.SerialNumber>

  /// Why a list was not read.
  public struct Failure: Error, Hashable, Sendable, CustomStringConvertible {
    /// Why, in words for the user.
    public var description: String
    init(_ description: String) { self.description = description }
  }

  /// Reads a list from `bytes` (PEM `X509 CRL` blocks, or DER) and checks that one of
  /// `authorities` signed it. Several PEM blocks are merged.
  public static func read(_ bytes: [UInt8], signedBy authorities: [Certificate]) throws(Failure) -> [RevocationList] {
    let text = String(decoding: bytes, as: UTF8.self)
    var documents: [[UInt8]] = []
    if text.contains("-----BEGIN X509 CRL-----") {
      do {
        documents = try PEMDocument.parseMultiple(pemString: text)
          .filter { $0.discriminator == "X509 CRL" }
          .map { Array($0.derBytes) }
      } catch {
        throw Failure("the revocation list is not valid PEM: \(error)")
      }
    } else if text.contains("-----BEGIN ") {
      throw Failure("the file is PEM but holds no X509 CRL block (is it a certificate?)")
    } else {
      documents = [bytes]
    }
    var lists: [RevocationList] = []
    for document in documents {
      lists.append(try Self(der: document, signedBy: authorities))
    }
    return lists
  }

  init(der: [UInt8], signedBy authorities: [Certificate]) throws(Failure) {
    let parsed: Parsed
    do {
      parsed = try Parsed(derEncoded: try DER.parse(der))
    } catch {
      throw Failure("the revocation list is not a DER CertificateList: \(error)")
    }
    guard let authority = authorities.first(where: { $0.subject == parsed.issuer }) else {
      throw Failure("the revocation list was issued by '\(parsed.issuer)', which is not a configured CA")
    }
    guard let algorithm = parsed.signatureAlgorithm,
      authority.publicKey.isValidSignature(parsed.signature, for: parsed.tbsBytes, signatureAlgorithm: algorithm)
    else {
      throw Failure("the revocation list's signature does not verify with the key of '\(authority.subject)'")
    }
    self.issuer = parsed.issuer
    self.thisUpdate = parsed.thisUpdate
    self.nextUpdate = parsed.nextUpdate
    self.revokedSerials = parsed.serials
  }

  /// Whether `certificate` (issued by this list's CA) is revoked.
  public func revokes(_ certificate: Certificate) -> Bool {
    certificate.issuer == self.issuer && self.revokedSerials.contains(certificate.serialNumber)
  }
}

extension RevocationList {
  /// `CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }`.
  fileprivate struct Parsed {
    var tbsBytes: [UInt8]
    var issuer: DistinguishedName
    var thisUpdate: Date
    var nextUpdate: Date?
    var serials: Set<Certificate.SerialNumber>
    var signatureAlgorithm: Certificate.SignatureAlgorithm?
    var signature: [UInt8]

    init(derEncoded root: ASN1Node) throws {
      var issuer: DistinguishedName?
      var thisUpdate: Date?
      var nextUpdate: Date?
      var serials = Set<Certificate.SerialNumber>()
      var tbsBytes: [UInt8] = []
      var algorithm: ASN1ObjectIdentifier?
      var signature: [UInt8] = []
      try DER.sequence(root, identifier: .sequence) { nodes in
        guard let tbs = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no tbsCertList") }
        tbsBytes = Array(tbs.encodedBytes)
        try DER.sequence(tbs, identifier: .sequence) { fields in
          var field = fields.next()
          if let node = field, node.identifier == .integer { field = fields.next() }  // version
          field = fields.next()  // the signature algorithm, repeated inside
          guard let issuerNode = field else { throw ASN1Error.invalidASN1Object(reason: "no issuer") }
          issuer = try DistinguishedName(derEncoded: issuerNode)
          guard let thisNode = fields.next() else { throw ASN1Error.invalidASN1Object(reason: "no thisUpdate") }
          thisUpdate = try Self.time(thisNode)
          var next = fields.next()
          if let node = next, node.identifier == .utcTime || node.identifier == .generalizedTime {
            nextUpdate = try Self.time(node)
            next = fields.next()
          }
          if let node = next, node.identifier == .sequence {
            try DER.sequence(node, identifier: .sequence) { entries in
              while let entry = entries.next() {
              try DER.sequence(entry, identifier: .sequence) { parts in
                guard let serial = parts.next() else { throw ASN1Error.invalidASN1Object(reason: "no serial") }
                let bytes = try ArraySlice<UInt8>(derEncoded: serial)
                serials.insert(Certificate.SerialNumber(bytes: bytes))
                while parts.next() != nil {}
              }
              }
            }
            next = fields.next()
          }
          while fields.next() != nil {}
        }
        guard let algorithmNode = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no algorithm") }
        try DER.sequence(algorithmNode, identifier: .sequence) { parts in
          guard let oid = parts.next() else { throw ASN1Error.invalidASN1Object(reason: "no algorithm") }
          algorithm = try ASN1ObjectIdentifier(derEncoded: oid)
          while parts.next() != nil {}
        }
        guard let signatureNode = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no signature") }
        signature = Array(try ASN1BitString(derEncoded: signatureNode).bytes)
      }
      guard let issuer, let thisUpdate else { throw ASN1Error.invalidASN1Object(reason: "incomplete tbsCertList") }
      self.tbsBytes = tbsBytes
      self.issuer = issuer
      self.thisUpdate = thisUpdate
      self.nextUpdate = nextUpdate
      self.serials = serials
      self.signature = signature
      self.signatureAlgorithm = algorithm.flatMap(Self.algorithm(for:))
    }

    private static func time(_ node: ASN1Node) throws -> Date {
      if node.identifier == .utcTime {
        let time = try UTCTime(derEncoded: node)
        return Self.date(time.year, time.month, time.day, time.hours, time.minutes, time.seconds)
      }
      let time = try GeneralizedTime(derEncoded: node)
      return Self.date(time.year, time.month, time.day, time.hours, time.minutes, Int(time.seconds))
    }

    private static func date(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int, _ second: Int) -> Date {
      var calendar = Calendar(identifier: .gregorian)
      calendar.timeZone = TimeZone(identifier: "UTC")!
      let components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
      return calendar.date(from: components) ?? .distantPast
    }

    private static func algorithm(for oid: ASN1ObjectIdentifier) -> Certificate.SignatureAlgorithm? {
      switch oid {
      case [1, 2, 840, 10045, 4, 3, 2]: return .ecdsaWithSHA256
      case [1, 2, 840, 10045, 4, 3, 3]: return .ecdsaWithSHA384
      case [1, 2, 840, 10045, 4, 3, 4]: return .ecdsaWithSHA512
      case [1, 2, 840, 113549, 1, 1, 11]: return .sha256WithRSAEncryption
      case [1, 2, 840, 113549, 1, 1, 12]: return .sha384WithRSAEncryption
      case [1, 2, 840, 113549, 1, 1, 13]: return .sha512WithRSAEncryption
      case [1, 3, 101, 112]: return .ed25519
      default: return nil
      }
    }
  }
}
