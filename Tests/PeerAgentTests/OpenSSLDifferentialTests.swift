import Crypto
import Foundation
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
    let past = Date().addingTimeInterval(-86_400 * 3)
    let future = Date().addingTimeInterval(86_400 * 3)

    add("good leaf from the root (dialer)", try ChainMint.leaf(peer, issuer: root))
    add("good leaf from the root (listener)", try ChainMint.leaf(peer, issuer: root), as: .listener)
    let intermediate = try ChainMint.intermediate(.ca("Corpus Intermediate"), issuer: root)
    add("good leaf through an intermediate", try ChainMint.leaf(peer, issuer: intermediate), [intermediate.certificate])
    add("intermediate missing from the chain", try ChainMint.leaf(peer, issuer: intermediate))

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
    var unknownLeaf = peer
    unknownLeaf.unknownCriticalExtension = true
    add("unknown critical extension on the leaf", try ChainMint.leaf(unknownLeaf, issuer: root))
    var unknownCA = ChainMint.Spec.ca("Unknown Critical CA")
    unknownCA.unknownCriticalExtension = true
    let unknownIntermediate = try ChainMint.intermediate(unknownCA, issuer: root)
    add("unknown critical extension on the intermediate", try ChainMint.leaf(peer, issuer: unknownIntermediate), [unknownIntermediate.certificate])

    // Validity.
    var expired = peer
    (expired.notValidBefore, expired.notValidAfter) = (past.addingTimeInterval(-86_400), past)
    add("expired leaf", try ChainMint.leaf(expired, issuer: root))
    var early = peer
    (early.notValidBefore, early.notValidAfter) = (future, future.addingTimeInterval(86_400))
    add("leaf not yet valid", try ChainMint.leaf(early, issuer: root))
    var expiredCA = ChainMint.Spec.ca("Expired Intermediate")
    (expiredCA.notValidBefore, expiredCA.notValidAfter) = (past.addingTimeInterval(-86_400), past)
    let expiredIntermediate = try ChainMint.intermediate(expiredCA, issuer: root)
    add("expired intermediate", try ChainMint.leaf(peer, issuer: expiredIntermediate), [expiredIntermediate.certificate])
    var earlyCA = ChainMint.Spec.ca("Early Intermediate")
    (earlyCA.notValidBefore, earlyCA.notValidAfter) = (future, future.addingTimeInterval(86_400))
    let earlyIntermediate = try ChainMint.intermediate(earlyCA, issuer: root)
    add("intermediate not yet valid", try ChainMint.leaf(peer, issuer: earlyIntermediate), [earlyIntermediate.certificate])

    // Extended key usage per role.
    var serverOnly = peer
    serverOnly.extendedKeyUsage = [.serverAuth]
    add("serverAuth-only leaf dialing", try ChainMint.leaf(serverOnly, issuer: root))
    add("serverAuth-only leaf listening", try ChainMint.leaf(serverOnly, issuer: root), as: .listener)
    var clientOnly = peer
    clientOnly.extendedKeyUsage = [.clientAuth]
    add("clientAuth-only leaf listening", try ChainMint.leaf(clientOnly, issuer: root), as: .listener)
    var noEKU = peer
    noEKU.extendedKeyUsage = nil
    add("leaf without extended key usage", try ChainMint.leaf(noEKU, issuer: root))
    var anyEKU = peer
    anyEKU.extendedKeyUsage = [.any]
    add("leaf with anyExtendedKeyUsage only", try ChainMint.leaf(anyEKU, issuer: root))
    var serverCA = ChainMint.Spec.ca("ServerAuth-only Intermediate")
    serverCA.extendedKeyUsage = [.serverAuth]
    let serverIntermediate = try ChainMint.intermediate(serverCA, issuer: root)
    add("intermediate restricted to serverAuth, dialer's leaf", try ChainMint.leaf(peer, issuer: serverIntermediate), [serverIntermediate.certificate])

    // Key usage.
    var encipherOnly = peer
    encipherOnly.keyUsage = KeyUsage(keyEncipherment: true)
    add("leaf key usage keyEncipherment only, dialing", try ChainMint.leaf(encipherOnly, issuer: root))
    add("leaf key usage keyEncipherment only, listening", try ChainMint.leaf(encipherOnly, issuer: root), as: .listener)
    var noKeyUsage = peer
    noKeyUsage.keyUsage = nil
    add("leaf without key usage", try ChainMint.leaf(noKeyUsage, issuer: root))
    var caNoKeyUsage = ChainMint.Spec.ca("No Key Usage CA")
    caNoKeyUsage.keyUsage = nil
    let noKeyUsageCA = try ChainMint.intermediate(caNoKeyUsage, issuer: root)
    add("intermediate without key usage", try ChainMint.leaf(peer, issuer: noKeyUsageCA), [noKeyUsageCA.certificate])
    var caNoCertSign = ChainMint.Spec.ca("No CertSign CA")
    caNoCertSign.keyUsage = KeyUsage(digitalSignature: true, cRLSign: true)
    let noCertSignCA = try ChainMint.intermediate(caNoCertSign, issuer: root)
    add("intermediate without keyCertSign", try ChainMint.leaf(peer, issuer: noCertSignCA), [noCertSignCA.certificate])

    // Basic constraints.
    var notCA = ChainMint.Spec.peer("not-a-ca")
    notCA.keyUsage = KeyUsage(digitalSignature: true, keyCertSign: true)
    let fakeIntermediate = try ChainMint.intermediate(notCA, issuer: root)
    add("leaf issued by a CA:FALSE certificate", try ChainMint.leaf(peer, issuer: fakeIntermediate), [fakeIntermediate.certificate])
    var nonCritical = ChainMint.Spec.ca("Non-critical BC")
    nonCritical.basicConstraintsCritical = false
    let nonCriticalCA = try ChainMint.intermediate(nonCritical, issuer: root)
    add("intermediate whose basic constraints are not critical", try ChainMint.leaf(peer, issuer: nonCriticalCA), [nonCriticalCA.certificate])
    var caLeaf = peer
    caLeaf.isCA = true
    caLeaf.keyUsage = KeyUsage(digitalSignature: true, keyCertSign: true)
    cases.append(Case(name: "CA:TRUE leaf", root: root, leaf: try ChainMint.leaf(caLeaf, issuer: root), strongerThanOpenSSL: true))

    // Identifiers the strict profile requires.
    var noAKID = peer
    noAKID.authorityKeyIdentifier = false
    add("leaf without authority key identifier", try ChainMint.leaf(noAKID, issuer: root))
    var noSKID = ChainMint.Spec.ca("No SKID CA")
    noSKID.subjectKeyIdentifier = false
    let noSKIDCA = try ChainMint.intermediate(noSKID, issuer: root)
    add("intermediate without subject key identifier", try ChainMint.leaf(peer, issuer: noSKIDCA), [noSKIDCA.certificate])

    // Signatures and trust.
    add("wrong signature", try ChainMint.leaf(peer, issuer: root, signer: P256.Signing.PrivateKey()))
    let other = try ChainMint.root(.ca("Corpus Root"))
    add("same-named root with another key", try ChainMint.leaf(peer, issuer: other))
    let stranger = try ChainMint.root(.ca("Stranger Root"))
    add("another CA", try ChainMint.leaf(peer, issuer: stranger))

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
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus == 0, output.replacingOccurrences(of: "\n", with: " "))
  }
}
