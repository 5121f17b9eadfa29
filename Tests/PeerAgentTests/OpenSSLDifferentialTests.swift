import Crypto
import Foundation
import PeerAgentTestSupport
import SwiftASN1
import Testing
import X509

@testable import PeerAgent

/// PeerAgent's verdict on a corpus of chains against OpenSSL's (`openssl verify -x509_strict`,
/// with `-purpose sslclient` for a dialer's chain and `sslserver` for a listener's), the
/// independent oracle. One rule PeerAgent keeps on top of OpenSSL's is named, and checked both
/// ways: a peer's certificate must not be a CA (OpenSSL accepts a CA:TRUE leaf).
@Suite("Chain verification agrees with OpenSSL")
struct OpenSSLDifferentialTests {
  /// One chain of the corpus.
  struct Case: CustomStringConvertible {
    var name: String
    var root: ChainMint.Authority
    var intermediates: [Certificate] = []
    var leaf: Certificate
    var presentedBy: CertificateVerifier.PresentedBy = .dialer
    /// A revocation list of the root, PEM.
    var revocationList: String? = nil
    /// PeerAgent refuses by its own rule, although OpenSSL accepts.
    var strongerThanOpenSSL = false
    var description: String { self.name }
  }

  static func corpus() throws -> [Case] {
    var cases: [Case] = []
    let root = try ChainMint.root(.ca("Corpus Root"))
    let peer = ChainMint.Spec.peer("edge")
    func add(_ name: String, _ leaf: Certificate, root r: ChainMint.Authority = root, _ intermediates: [Certificate] = [], as role: CertificateVerifier.PresentedBy = .dialer) {
      cases.append(Case(name: name, root: r, intermediates: intermediates, leaf: leaf, presentedBy: role))
    }
    /// `edge`'s good certificate from the root, changed by `change`.
    func leaf(_ change: (inout ChainMint.Spec) -> Void) throws -> Certificate {
      var spec = peer
      change(&spec)
      return try ChainMint.leaf(spec, issuer: root)
    }
    /// A good `edge` certificate under an intermediate `name` of the root, changed by `change`;
    /// added with the intermediate presented.
    func addThroughIntermediate(_ caseName: String, _ name: String, _ change: (inout ChainMint.Spec) -> Void) throws {
      var spec = ChainMint.Spec.ca(name)
      change(&spec)
      let intermediate = try ChainMint.intermediate(spec, issuer: root)
      add(caseName, try ChainMint.leaf(peer, issuer: intermediate), [intermediate.certificate])
    }
    let past = Date().addingTimeInterval(-86_400 * 3)
    let future = Date().addingTimeInterval(86_400 * 3)

    add("good leaf from the root (dialer)", try ChainMint.leaf(peer, issuer: root))
    add("good leaf from the root (listener)", try ChainMint.leaf(peer, issuer: root), as: .listener)
    try addThroughIntermediate("good leaf through an intermediate", "Corpus Intermediate") { _ in }
    let missing = try ChainMint.intermediate(.ca("Missing Intermediate"), issuer: root)
    add("intermediate missing from the chain", try ChainMint.leaf(peer, issuer: missing))

    // Path length: a root that allows no sub-CA, with one.
    var noSubCA = ChainMint.Spec.ca("Root PathLen 0")
    noSubCA.pathLength = 0
    let strictRoot = try ChainMint.root(noSubCA)
    let tooDeep = try ChainMint.intermediate(.ca("Too Deep"), issuer: strictRoot)
    add("path length exceeded", try ChainMint.leaf(peer, issuer: tooDeep), root: strictRoot, [tooDeep.certificate])
    add("path length 0, leaf straight from the root", try ChainMint.leaf(peer, issuer: strictRoot), root: strictRoot)

    // Name constraints on an intermediate.
    var constrained = ChainMint.Spec.ca("Constrained")
    constrained.nameConstraints = NameConstraints(permittedDNSDomains: ["example.com"])
    let constrainedCA = try ChainMint.intermediate(constrained, issuer: root)
    add("name outside the permitted subtree", try ChainMint.leaf(peer, issuer: constrainedCA), [constrainedCA.certificate])
    var inside = ChainMint.Spec.peer("edge.example.com")
    inside.dnsNames = ["edge.example.com"]
    add("name inside the permitted subtree", try ChainMint.leaf(inside, issuer: constrainedCA), [constrainedCA.certificate])

    // Unknown critical extensions.
    add("unknown critical extension on the leaf", try leaf { $0.unknownCriticalExtension = true })
    try addThroughIntermediate("unknown critical extension on the intermediate", "Unknown Critical CA") { $0.unknownCriticalExtension = true }

    // Validity.
    add("expired leaf", try leaf { ($0.notValidBefore, $0.notValidAfter) = (past.addingTimeInterval(-86_400), past) })
    add("leaf not yet valid", try leaf { ($0.notValidBefore, $0.notValidAfter) = (future, future.addingTimeInterval(86_400)) })
    try addThroughIntermediate("expired intermediate", "Expired Intermediate") {
      ($0.notValidBefore, $0.notValidAfter) = (past.addingTimeInterval(-86_400), past)
    }
    try addThroughIntermediate("intermediate not yet valid", "Early Intermediate") {
      ($0.notValidBefore, $0.notValidAfter) = (future, future.addingTimeInterval(86_400))
    }

    // Extended key usage per role.
    let serverOnly = try leaf { $0.extendedKeyUsage = [.serverAuth] }
    add("serverAuth-only leaf dialing", serverOnly)
    add("serverAuth-only leaf listening", serverOnly, as: .listener)
    add("clientAuth-only leaf listening", try leaf { $0.extendedKeyUsage = [.clientAuth] }, as: .listener)
    add("leaf without extended key usage", try leaf { $0.extendedKeyUsage = nil })
    add("leaf with anyExtendedKeyUsage only", try leaf { $0.extendedKeyUsage = [.any] })
    try addThroughIntermediate("intermediate restricted to serverAuth, dialer's leaf", "ServerAuth-only Intermediate") {
      $0.extendedKeyUsage = [.serverAuth]
    }

    // Key usage.
    let encipherOnly = try leaf { $0.keyUsage = KeyUsage(keyEncipherment: true) }
    add("leaf key usage keyEncipherment only, dialing", encipherOnly)
    add("leaf key usage keyEncipherment only, listening", encipherOnly, as: .listener)
    add("leaf without key usage", try leaf { $0.keyUsage = nil })
    try addThroughIntermediate("intermediate without key usage", "No Key Usage CA") { $0.keyUsage = nil }
    try addThroughIntermediate("intermediate without keyCertSign", "No CertSign CA") {
      $0.keyUsage = KeyUsage(digitalSignature: true, cRLSign: true)
    }

    // Basic constraints.
    try addThroughIntermediate("leaf issued by a CA:FALSE certificate", "not-a-ca") {
      $0 = ChainMint.Spec.peer("not-a-ca")
      $0.keyUsage = KeyUsage(digitalSignature: true, keyCertSign: true)
    }
    try addThroughIntermediate("intermediate whose basic constraints are not critical", "Non-critical BC") {
      $0.basicConstraintsCritical = false
    }
    let caLeaf = try leaf {
      $0.isCA = true
      $0.keyUsage = KeyUsage(digitalSignature: true, keyCertSign: true)
    }
    cases.append(Case(name: "CA:TRUE leaf", root: root, leaf: caLeaf, strongerThanOpenSSL: true))

    // Identifiers the strict profile requires.
    add("leaf without authority key identifier", try leaf { $0.authorityKeyIdentifier = false })
    try addThroughIntermediate("intermediate without subject key identifier", "No SKID CA") { $0.subjectKeyIdentifier = false }

    // Signatures and trust.
    add("wrong signature", try ChainMint.leaf(peer, issuer: root, signer: P256.Signing.PrivateKey()))
    add("same-named root with another key", try ChainMint.leaf(peer, issuer: try ChainMint.root(.ca("Corpus Root"))))
    add("another CA", try ChainMint.leaf(peer, issuer: try ChainMint.root(.ca("Stranger Root"))))

    // Revocation.
    let authority = try DevelopmentCertificates.loadAuthority(
      certificatePEM: root.certificate.pem,
      privateKeyPEM: root.key.pemRepresentation
    )
    let revoked = try ChainMint.leaf(peer, issuer: root)
    let list = try authority.revocationListPEM(revoking: [revoked.serialNumber])
    cases.append(Case(name: "revoked leaf", root: root, leaf: revoked, revocationList: list))
    cases.append(Case(name: "leaf not on the revocation list", root: root, leaf: try ChainMint.leaf(peer, issuer: root), revocationList: list))
    return cases
  }

  @Test("Every chain of the corpus gets OpenSSL's verdict")
  func agreesWithOpenSSL() async throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("differential-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    var rows: [String] = []
    for item in try Self.corpus() {
      let openSSL = try Self.openSSLAccepts(item, in: folder)
      var lists: [RevocationList] = []
      if let pem = item.revocationList {
        lists = try RevocationList.read(Array(pem.utf8), signedBy: [item.root.certificate])
      }
      let verifier = CertificateVerifier(trustRoots: [item.root.certificate], revocationLists: lists)
      var reason = "accepted"
      do {
        _ = try await verifier.verify(chain: [item.leaf] + item.intermediates, presentedBy: item.presentedBy)
      } catch {
        reason = error.description
      }
      let peerAgent = reason == "accepted"
      rows.append("\(item.name): openssl \(openSSL.accepted ? "accepts" : "refuses (\(openSSL.output))"), PeerAgent \(reason)")
      if item.strongerThanOpenSSL {
        #expect(openSSL.accepted, "\(item.name): OpenSSL was expected to accept: \(openSSL.output)")
        #expect(!peerAgent && reason.contains("must not be a CA"), "\(item.name): \(reason)")
      } else {
        #expect(peerAgent == openSSL.accepted, "\(item.name): openssl: \(openSSL.output); PeerAgent: \(reason)")
      }
    }
    print(rows.joined(separator: "\n"))
  }

  @Test("Revocation lists RFC 5280 says not to use are refused, as OpenSSL refuses them; a file with no valid list fails closed")
  func revocationListShapes() throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let root = try Certificate(pemEncoded: ca.authority.certificatePEM)
    let edge = try ca.issue(name: "edge")
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("crl-shapes-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let caPath = folder.appendingPathComponent("ca.pem").path
    let leafPath = folder.appendingPathComponent("leaf.pem").path
    try ca.authority.certificatePEM.write(toFile: caPath, atomically: true, encoding: .utf8)
    try edge.certificatePEM.write(toFile: leafPath, atomically: true, encoding: .utf8)
    let octets = { (bytes: [UInt8]) in ArraySlice(bytes) }
    // `usable`: OpenSSL's verdict, and PeerAgent's unless `stricter`: where OpenSSL 3.0 uses a
    // list as the CA's complete list although RFC 5280 says it is not one (a delta, a partition)
    // or must not be used (§5.1.1.2: the two algorithm identifiers must be the same),
    // PeerAgent refuses the file: a list it cannot apply completely fails closed.
    var cases: [(name: String, shape: DevelopmentCertificates.RevocationListShape, usable: Bool, stricter: Bool)] = [
      ("a plain list", .init(), true, false)
    ]
    func shape(_ change: (inout DevelopmentCertificates.RevocationListShape) -> Void) -> DevelopmentCertificates.RevocationListShape {
      var shape = DevelopmentCertificates.RevocationListShape()
      change(&shape)
      return shape
    }
    // An unknown extension marked critical; the same not critical is ignored.
    cases.append(("an unknown critical extension", shape { $0.extensions = [.init(oid: [1, 3, 6, 1, 4, 1, 99999, 1], critical: true, value: octets([5, 0]))] }, false, false))
    cases.append(("an unknown non-critical extension", shape { $0.extensions = [.init(oid: [1, 3, 6, 1, 4, 1, 99999, 1], critical: false, value: octets([5, 0]))] }, true, false))
    // deltaCRLIndicator (critical, BaseCRLNumber 1).
    cases.append(("a delta CRL", shape { $0.extensions = [.init(oid: [2, 5, 29, 27], critical: true, value: octets([2, 1, 1]))] }, true, true))
    // issuingDistributionPoint with onlyContainsUserCerts (a partition).
    cases.append(("an issuing distribution point", shape { $0.extensions = [.init(oid: [2, 5, 29, 28], critical: true, value: octets([0x30, 0x03, 0x81, 0x01, 0xFF]))] }, true, true))
    cases.append(("inner and outer algorithms that differ", shape { $0.innerAlgorithm = [1, 2, 840, 10045, 4, 3, 3] }, true, true))
    cases.append(("a thisUpdate in the future", shape { $0.thisUpdateOffset = 3_600 }, false, false))
    cases.append(("an unknown critical entry extension", shape { $0.entryExtensions = [.init(oid: [1, 3, 6, 1, 4, 1, 99999, 2], critical: true, value: octets([5, 0]))] }, false, false))

    var rows: [String] = []
    for item in cases {
      // The list revokes a serial that is not edge's: only its shape decides.
      let pem = try ca.revocationListPEM(revoking: [Certificate.SerialNumber(bytes: [0x7f, 0x01])], shape: item.shape)
      let crlPath = folder.appendingPathComponent("crl.pem").path
      try pem.write(toFile: crlPath, atomically: true, encoding: .utf8)
      let (status, output) = try Tool.run(
        "/usr/bin/openssl",
        ["verify", "-crl_check", "-purpose", "sslclient", "-CAfile", caPath, "-CRLfile", crlPath, leafPath]
      )
      var ours = "read"
      do {
        _ = try RevocationList.read(Array(pem.utf8), signedBy: [root])
      } catch {
        ours = error.description
      }
      rows.append("\(item.name): openssl \(status == 0 ? "uses it" : "refuses (\(output.replacingOccurrences(of: "\n", with: " ")))"), PeerAgent \(ours)")
      #expect((status == 0) == item.usable, "\(item.name): openssl: \(output)")
      #expect((ours == "read") == (item.usable && !item.stricter), "\(item.name): PeerAgent: \(ours)")
    }
    print(rows.joined(separator: "\n"))

    // Fails closed: a block with another label, even beside a comment that names the right
    // one, yields no list and is refused; so is an empty file.
    let plain = try ca.revocationListPEM(revoking: [])
    let relabelled = "# -----BEGIN X509 CRL----- is the label this file should have\n"
      + plain.replacingOccurrences(of: "X509 CRL", with: "CRL")
    #expect(throws: RevocationList.Failure.self) { try RevocationList.read(Array(relabelled.utf8), signedBy: [root]) }
    #expect(throws: RevocationList.Failure.self) { try RevocationList.read([], signedBy: [root]) }
    #expect(throws: RevocationList.Failure.self) {
      try RevocationList.read(Array((plain + edge.certificatePEM).utf8), signedBy: [root])
    }
  }

  private static func openSSLAccepts(_ item: Case, in folder: URL) throws -> (accepted: Bool, output: String) {
    let directory = folder.appendingPathComponent(item.name.replacingOccurrences(of: " ", with: "-").replacingOccurrences(of: "/", with: "-"))
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let ca = directory.appendingPathComponent("ca.pem").path
    let leaf = directory.appendingPathComponent("leaf.pem").path
    try item.root.certificate.pem.write(toFile: ca, atomically: true, encoding: .utf8)
    try item.leaf.pem.write(toFile: leaf, atomically: true, encoding: .utf8)
    var arguments = [
      "verify", "-x509_strict", "-purpose", item.presentedBy == .dialer ? "sslclient" : "sslserver", "-CAfile", ca,
    ]
    if !item.intermediates.isEmpty {
      let untrusted = directory.appendingPathComponent("untrusted.pem").path
      try item.intermediates.map(\.pem).joined().write(toFile: untrusted, atomically: true, encoding: .utf8)
      arguments += ["-untrusted", untrusted]
    }
    if let list = item.revocationList {
      let crl = directory.appendingPathComponent("crl.pem").path
      try list.write(toFile: crl, atomically: true, encoding: .utf8)
      arguments += ["-crl_check", "-CRLfile", crl]
    }
    arguments.append(leaf)
    let (status, output) = try Tool.run("/usr/bin/openssl", arguments)
    return (status == 0, output.replacingOccurrences(of: "\n", with: " "))
  }
}
