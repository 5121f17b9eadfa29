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
  ///
  /// Fails closed: a file that yields no valid list (no block, a block with another label, a
  /// block that does not parse or verify) is refused as a whole, and so is a list RFC 5280
  /// says not to use as a complete list here — a delta CRL, a partitioned or indirect one (an
  /// issuing distribution point, a certificate issuer on an entry), one with a critical
  /// extension PeerAgent does not process, one whose inner and outer signature algorithms
  /// differ, or one issued after `now` (`thisUpdate` in the future), as OpenSSL refuses them.
  public static func read(_ bytes: [UInt8], signedBy authorities: [Certificate], now: Date = Date()) throws(Failure) -> [RevocationList] {
    let text = String(decoding: bytes, as: UTF8.self)
    var documents: [[UInt8]] = []
    if text.contains("-----BEGIN ") {
      let blocks: [PEMDocument]
      do {
        blocks = try PEMDocument.parseMultiple(pemString: text)
      } catch {
        throw Failure("the revocation list is not valid PEM: \(error)")
      }
      if let other = blocks.first(where: { $0.discriminator != "X509 CRL" }) {
        throw Failure(
          "the file holds a PEM block labelled '\(other.discriminator.logSafe)', not 'X509 CRL' (is it a certificate, or a list written with another label?)"
        )
      }
      documents = blocks.map { Array($0.derBytes) }
      guard !documents.isEmpty else { throw Failure("the file holds no X509 CRL block") }
    } else {
      guard !bytes.isEmpty else { throw Failure("the file is empty: it holds no revocation list") }
      documents = [bytes]
    }
    var lists: [RevocationList] = []
    for document in documents {
      lists.append(try Self(der: document, signedBy: authorities, now: now))
    }
    return lists
  }

  init(der: [UInt8], signedBy authorities: [Certificate], now: Date = Date()) throws(Failure) {
    let parsed: Parsed
    do {
      parsed = try Parsed(derEncoded: try DER.parse(der))
    } catch {
      throw Failure("the revocation list is not a DER CertificateList: \(error)")
    }
    guard let authority = authorities.first(where: { $0.subject == parsed.issuer }) else {
      throw Failure("the revocation list was issued by '\(parsed.issuer)', which is not a configured CA")
    }
    guard parsed.innerAlgorithm == parsed.outerAlgorithm else {
      throw Failure("the revocation list names one signature algorithm inside and another outside (RFC 5280 §5.1.1.2): refused")
    }
    guard let algorithm = parsed.signatureAlgorithm,
      authority.publicKey.isValidSignature(parsed.signature, for: parsed.tbsBytes, signatureAlgorithm: algorithm)
    else {
      throw Failure("the revocation list's signature does not verify with the key of '\(authority.subject)'")
    }
    if let refusal = Self.refusal(ofExtensions: parsed.extensions, entryExtensions: parsed.entryExtensions) {
      throw Failure(refusal)
    }
    guard parsed.thisUpdate <= now else {
      throw Failure(
        "the revocation list is not valid yet: issued \(ISO8601DateFormatter().string(from: parsed.thisUpdate)), after this machine's clock (check the clocks)"
      )
    }
    self.issuer = parsed.issuer
    self.thisUpdate = parsed.thisUpdate
    self.nextUpdate = parsed.nextUpdate
    self.revokedSerials = parsed.serials
  }

  /// The list extensions PeerAgent processes (RFC 5280 §5.2): authority key identifier, CRL
  /// number, freshest CRL (a pointer to delta CRLs, which are not fetched), authority
  /// information access.
  static let processedExtensions: Set<ASN1ObjectIdentifier> = [
    [2, 5, 29, 35], [2, 5, 29, 20], [2, 5, 29, 46], [1, 3, 6, 1, 5, 5, 7, 1, 1],
  ]
  /// The entry extensions PeerAgent processes (§5.3): reason code, invalidity date, hold
  /// instruction code.
  static let processedEntryExtensions: Set<ASN1ObjectIdentifier> = [[2, 5, 29, 21], [2, 5, 29, 24], [2, 5, 29, 23]]

  /// Why a list with these extensions cannot be used as this CA's complete list, if it cannot.
  private static func refusal(
    ofExtensions extensions: [Certificate.Extension],
    entryExtensions: [Certificate.Extension]
  ) -> String? {
    for item in extensions {
      switch item.oid {
      case [2, 5, 29, 27]:
        return "the revocation list is a delta CRL (deltaCRLIndicator): give the complete list"
      case [2, 5, 29, 28]:
        return "the revocation list has an issuing distribution point: a partitioned or indirect list is not a complete list for its CA"
      default:
        if item.critical, !Self.processedExtensions.contains(item.oid) {
          return "the revocation list has a critical extension PeerAgent does not process (\(item.oid))"
        }
      }
    }
    for item in entryExtensions {
      if item.oid == [2, 5, 29, 29] {
        return "the revocation list is indirect (an entry names a certificate issuer): give each CA's own list"
      }
      if item.critical, !Self.processedEntryExtensions.contains(item.oid) {
        return "an entry of the revocation list has a critical extension PeerAgent does not process (\(item.oid))"
      }
    }
    return nil
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
    /// The algorithm identifier inside tbsCertList and outside it, as encoded.
    var innerAlgorithm: [UInt8]
    var outerAlgorithm: [UInt8]
    /// The list's extensions (`crlExtensions`) and those of every entry.
    var extensions: [Certificate.Extension]
    var entryExtensions: [Certificate.Extension]

    init(derEncoded root: ASN1Node) throws {
      var issuer: DistinguishedName?
      var thisUpdate: Date?
      var nextUpdate: Date?
      var serials = Set<Certificate.SerialNumber>()
      var tbsBytes: [UInt8] = []
      var algorithm: ASN1ObjectIdentifier?
      var signature: [UInt8] = []
      var innerAlgorithm: [UInt8] = []
      var outerAlgorithm: [UInt8] = []
      var extensions: [Certificate.Extension] = []
      var entryExtensions: [Certificate.Extension] = []
      try DER.sequence(root, identifier: .sequence) { nodes in
        guard let tbs = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no tbsCertList") }
        tbsBytes = Array(tbs.encodedBytes)
        try DER.sequence(tbs, identifier: .sequence) { fields in
          var field = fields.next()
          if let node = field, node.identifier == .integer { field = fields.next() }  // version
          // The signature algorithm, repeated inside: it must be the outer one.
          guard let inner = field else { throw ASN1Error.invalidASN1Object(reason: "no signature algorithm") }
          innerAlgorithm = Array(inner.encodedBytes)
          field = fields.next()
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
                _ = parts.next()  // revocationDate
                if let list = parts.next() {
                  entryExtensions += try Self.extensions(in: list)
                }
                while parts.next() != nil {}
              }
              }
            }
            next = fields.next()
          }
          // crlExtensions [0] EXPLICIT Extensions.
          if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
            try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) { inner in
              extensions = try Self.extensions(in: inner)
            }
            next = fields.next()
          }
          if next != nil {
            throw ASN1Error.invalidASN1Object(reason: "unexpected fields after crlExtensions")
          }
        }
        guard let algorithmNode = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "no algorithm") }
        outerAlgorithm = Array(algorithmNode.encodedBytes)
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
      self.innerAlgorithm = innerAlgorithm
      self.outerAlgorithm = outerAlgorithm
      self.extensions = extensions
      self.entryExtensions = entryExtensions
    }

    /// `Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension`.
    private static func extensions(in node: ASN1Node) throws -> [Certificate.Extension] {
      var result: [Certificate.Extension] = []
      try DER.sequence(node, identifier: .sequence) { items in
        while let item = items.next() {
          result.append(try Certificate.Extension(derEncoded: item))
        }
      }
      return result
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
