import Crypto
import Foundation
import PeerAgentTestSupport
import Testing
import SwiftASN1
import X509

@testable import PeerAgent

/// One name one key, allowlists, revocation lists and key fingerprints, in process.
@Suite("Trust: one name one key, allowlists, revocation")
struct TrustTests {
  @Test("In dual mode the outbound and inbound connections of one remote must present the same key")
  func dualModeOneKey() async throws {
    let certificates = try TestCertificates()
    let hub = try TestPeer(name: "hub", mode: .dual, security: try certificates.security(for: "hub"), listen: true)
    // Two processes claiming to be 'edge', each with its own key of the CA: the hub dials the
    // first; the second dials the hub.
    let edgeA = try TestPeer(name: "edge", mode: .dual, security: try certificates.security(for: "edge"), listen: true)
    try await withRunningPeers([hub, edgeA]) {
      let hubAddress = try await hub.peer.listeningAddress
      hub.peer.dial(Peer.Target(address: try await edgeA.peer.listeningAddress, expectedIdentity: "edge"))
      #expect(await hub.waitUntilConnected(to: "edge"))
      let edgeB = try TestPeer(
        name: "edge",
        mode: .dual,
        security: try certificates.security(for: "edge"),
        listen: true,
        connect: [Peer.Target(address: hubAddress, expectedIdentity: "hub")]
      )
      try await withRunningPeers([edgeB]) {
        let refusal = await hub.events.wait {
          if case .refused(_, let reason) = $0 { return reason.contains("one name, one key") }
          return false
        }
        #expect(refusal != nil)
        let told = await edgeB.events.wait {
          if case .refused(_, let reason) = $0 { return reason.contains("the listener refused this peer") }
          return false
        }
        #expect(told != nil)
        // The hub's requests to 'edge' still go to the edge it verified first.
        let reply = try await hub.peer.send("who?", to: "edge")
        #expect(reply.text == "ack from edge: who?")
        #expect(edgeA.requests.all.count == 1 && edgeB.requests.all.isEmpty)
      }
    }
  }

  @Test("A reload that takes a peer off the allowlist ends its link; a failed reload keeps the old allowlist")
  func allowlistReload() async throws {
    let certificates = try TestCertificates()
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("allow-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let file = folder.appendingPathComponent("allowed").path
    try "edge\nedge2\n".write(toFile: file, atomically: true, encoding: .utf8)
    var security = try certificates.security(for: "hub")
    security.updateMutualTLS { $0.authorization.allowlist = .file(file) }
    let hub = try TestPeer(name: "hub", mode: .single, security: security, listen: true)
    try await withRunningPeers([hub]) {
      let address = try await hub.peer.listeningAddress
      let target = Peer.Target(address: address, expectedIdentity: "hub")
      let edge = try TestPeer(name: "edge", mode: .single, security: try certificates.security(for: "edge"), connect: [target])
      let edge2 = try TestPeer(name: "edge2", mode: .single, security: try certificates.security(for: "edge2"), connect: [target])
      try await withRunningPeers([edge, edge2]) {
        #expect(await hub.waitUntilConnected(to: "edge"))
        #expect(await hub.waitUntilConnected(to: "edge2"))
        // A broken file: refused, the old list stays, nobody is cut off.
        try "ed ge\n".write(toFile: file, atomically: true, encoding: .utf8)
        await #expect(throws: PeerAgentError.self) { try await hub.peer.reloadSecurity() }
        #expect(Set(hub.peer.connectedPeers.map(\.name)) == ["edge", "edge2"])

        try "edge2\n".write(toFile: file, atomically: true, encoding: .utf8)
        try await hub.peer.reloadSecurity()
        let ended = await hub.events.wait {
          if case .disconnected(let peer, _, _) = $0 { return peer.name == "edge" }
          return false
        }
        #expect(ended != nil)
        let told = await edge.events.wait {
          if case .refused(_, let reason) = $0 { return reason.contains("not on the allowlist") }
          return false
        }
        #expect(told != nil, "\(edge.events.all)")
        let reply = try await hub.peer.send("still?", to: "edge2")
        #expect(reply.text == "ack from edge2: still?")
        #expect(!hub.peer.connectedPeers.map(\.name).contains("edge"))
      }
    }
  }

  @Test("The same key reconnecting is welcome; another key is refused only while the name is connected")
  func keyClaims() throws {
    let keys = IdentityKeys()
    let a = KeyFingerprint(publicKey: .init(P256.Signing.PrivateKey().publicKey))
    let b = KeyFingerprint(publicKey: .init(P256.Signing.PrivateKey().publicKey))
    func remote(_ name: String, _ key: KeyFingerprint) -> RemotePeer { RemotePeer(identity: .verified(name), key: key) }
    let first = try keys.claim(remote("edge", a), key: a)
    let second = try keys.claim(remote("edge", a), key: a)  // a reconnect while the stale link lives
    #expect(throws: IdentityKeys.Conflict(name: "edge", connected: a, presented: b)) { try keys.claim(remote("edge", b), key: b) }
    keys.release(first)
    #expect(throws: IdentityKeys.Conflict.self) { try keys.check("edge", key: b) }
    keys.release(second)
    _ = try keys.claim(remote("edge", b), key: b)  // all of a's connections ended: b may come
    _ = try keys.claim(remote("hub", a), key: a)  // names are independent
  }

  @Test("Allowlists parse names and pins, and refuse others and other keys")
  func allowlists() throws {
    let key = KeyFingerprint(publicKey: .init(P256.Signing.PrivateKey().publicKey))
    let other = KeyFingerprint(publicKey: .init(P256.Signing.PrivateKey().publicKey))
    let list = try Allowlist(parsing: "edge-1, edge-2=\(key)  # the second is pinned\n\n# comment\nedge-3\n")
    #expect(list.entries.count == 3)
    #expect(list.refusal(of: "edge-1", key: other) == nil)
    #expect(list.refusal(of: "edge-2", key: key) == nil)
    #expect(list.refusal(of: "edge-2", key: other)?.contains("the allowlist pins \(key)") == true)
    #expect(list.refusal(of: "intruder", key: key) == "peer 'intruder' is not on the allowlist")
    let base64 = "sha256:" + Data(key.bytes).base64EncodedString()
    #expect(try Allowlist(parsing: "edge=\(base64)").entries["edge"] == .some(key))
    for bad in ["", "# nothing", "edge=md5:00", "edge=sha256:zz", "ed ge", "a=\(key),a=\(other)"] {
      #expect(throws: Allowlist.Failure.self, "\(bad)") { try Allowlist(parsing: bad) }
    }
  }

  @Test("Names compare byte for byte: a non-ASCII allowlist entry is refused, and a certificate named cafe\u{301} is no identity")
  func namesAreASCII() async throws {
    #expect(throws: Allowlist.Failure.self) { try Allowlist(parsing: "caf\u{E9}") }
    #expect(throws: Allowlist.Failure.self) { try Allowlist(parsing: "cafe\u{301}") }
    #expect(try Allowlist(parsing: "xn--caf-dma, edge").entries.count == 2)
    let root = try ChainMint.root(.ca("Trust Root"))
    // A DNS name in a certificate is ASCII (IA5String); a common name is UTF-8, and counts
    // when there are no alternative names.
    var spec = ChainMint.Spec.peer("x")
    spec.subjectAlternativeNames = false
    spec.commonName = "cafe\u{301}"
    let decomposed = try ChainMint.leaf(spec, issuer: root)
    #expect(CertificateNames.identity(of: decomposed) == nil)
    let verifier = CertificateVerifier(trustRoots: [root.certificate])
    await #expect(throws: CertificateVerifier.Failure.self) {
      _ = try await verifier.verify(chain: [decomposed], presentedBy: .dialer)
    }
  }

  @Test("A chain verified at its handshake is checked again as the time and the material change: expiry at an injected now, revocation, allowlist")
  func standingOfAVerifiedChain() throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("standing-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let hub = try ca.issue(name: "hub")
    let edge = try Certificate(pemEncoded: try ca.issue(name: "edge", notValidAfter: Date().addingTimeInterval(3_600)).certificatePEM)
    let root = try Certificate(pemEncoded: ca.authority.certificatePEM)
    func material(revoking: [Certificate.SerialNumber], allow: String?) throws -> TLSMaterial.Snapshot {
      var tls = Peer.Config.MutualTLS(
        trustRoots: .pem(ca.authority.certificatePEM),
        certificateChain: .pem(hub.certificatePEM),
        privateKey: .pem(hub.privateKeyPEM)
      )
      tls.authorization.revocationList = .pem(try ca.revocationListPEM(revoking: revoking))
      if let allow { tls.authorization.allowlist = Peer.Config.AllowlistSource.entries(try Allowlist(parsing: allow)) }
      return try TLSMaterial(tls).current
    }
    let key = KeyFingerprint(of: edge)
    let chain = [edge, root]
    #expect(try material(revoking: [], allow: nil).standing(of: chain, key: key) == .stands)
    // Time is an input: an hour and a minute from now, the same chain has expired.
    let later = Date().addingTimeInterval(3_660)
    guard case .refused(let expired) = try material(revoking: [], allow: nil).standing(of: chain, key: key, now: later) else {
      Issue.record("an expired chain still stands")
      return
    }
    #expect(expired.description.contains("expired"))
    guard case .refused(let revoked) = try material(revoking: [edge.serialNumber], allow: nil).standing(of: chain, key: key) else {
      Issue.record("a revoked chain still stands")
      return
    }
    #expect(revoked.description.contains("is revoked") && !revoked.byAllowlist)
    guard case .refused(let notAllowed) = try material(revoking: [], allow: "hub").standing(of: chain, key: key) else {
      Issue.record("a chain off the allowlist still stands")
      return
    }
    #expect(notAllowed.byAllowlist)
    // Another CA file: only a full verification can tell.
    let other = try DevelopmentCertificates.makeAuthority()
    #expect(try material(revoking: [], allow: nil).standing(of: [edge, try Certificate(pemEncoded: other.authority.certificatePEM)], key: key) == .rootReplaced)
  }

  @Test("Key fingerprints are OpenSSL's: SHA-256 of the DER SubjectPublicKeyInfo")
  func fingerprintsMatchOpenSSL() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fingerprint-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try DevelopmentCertificates.write(names: ["edge"], to: folder)
    let ours = try CertificateDirectory(folder).keyFingerprint(for: "edge").description
    let output = try Tool.shell("openssl x509 -in '\(folder)/edge.pem' -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum").output
    #expect(ours == "sha256:" + (output.split(separator: " ").first.map(String.init) ?? "?"))
  }

  @Test("A revocation list must be signed by a configured CA; OpenSSL reads the ones PeerAgent writes")
  func revocationLists() throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let other = try DevelopmentCertificates.makeAuthority()
    let root = try Certificate(pemEncoded: ca.authority.certificatePEM)
    let edge = try Certificate(pemEncoded: try ca.issue(name: "edge").certificatePEM)
    let pem = try ca.revocationListPEM(revoking: [edge.serialNumber])
    let lists = try RevocationList.read(Array(pem.utf8), signedBy: [root])
    #expect(lists.count == 1 && lists[0].revokes(edge))
    #expect(throws: RevocationList.Failure.self) {
      try RevocationList.read(Array(try other.revocationListPEM(revoking: []).utf8), signedBy: [root])
    }
    #expect(throws: RevocationList.Failure.self) { try RevocationList.read(Array("garbage".utf8), signedBy: [root]) }
    // DER works too.
    let der = try PEMDocument(pemString: pem).derBytes
    #expect(try RevocationList.read(der, signedBy: [root])[0].revokes(edge))

    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("crl-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    try pem.write(to: folder.appendingPathComponent("crl.pem"), atomically: true, encoding: .utf8)
    try ca.authority.certificatePEM.write(to: folder.appendingPathComponent("ca.pem"), atomically: true, encoding: .utf8)
    let (status, output) = try Tool.run(
      "/usr/bin/openssl",
      ["crl", "-in", folder.appendingPathComponent("crl.pem").path, "-CAfile", folder.appendingPathComponent("ca.pem").path, "-noout"]
    )
    #expect(status == 0 && output.contains("verify OK"), "\(output)")
  }

  @Test("Warnings: a certificate expiring within the warning time, a revocation list past its next update")
  func warnings() throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let soon = try ca.issue(name: "edge", notValidAfter: Date().addingTimeInterval(3 * 86_400 + 600))
    let stale = try ca.revocationListPEM(revoking: [], validity: -3600)
    let material = try TLSMaterial(
      Peer.Config.MutualTLS(
        trustRoots: .pem(ca.authority.certificatePEM),
        certificateChain: .pem(soon.certificatePEM),
        privateKey: .pem(soon.privateKeyPEM),
        authorization: Peer.Config.Authorization(revocationList: .pem(stale))
      )
    )
    let warning = StartupChecks.expiryWarning(material.current, within: .seconds(14 * 86_400))
    #expect(warning?.contains("in 3 days 0 hours: renew it") == true, "\(warning ?? "nil")")
    #expect(StartupChecks.expiryWarning(material.current, within: .seconds(86_400)) == nil)
    let lists = StartupChecks.revocationWarnings(material.current)
    #expect(lists.count == 1 && lists[0].contains("was due to be replaced"), "\(lists)")
  }

  @Test("A certificate whose extended key usage does not fit the peer's roles is refused at start")
  func startupExtendedKeyUsage() throws {
    let root = try ChainMint.root(.ca("EKU Root"))
    var serverOnly = ChainMint.Spec.peer("edge")
    serverOnly.extendedKeyUsage = [.serverAuth]
    let issued = try ChainMint.issueWithKey(serverOnly, issuer: root)
    let security = Peer.Config.Security.mutualTLS(
      trustRoots: .pem(root.certificate.pem),
      certificateChain: .pem(issued.certificate.pem),
      privateKey: .pem(issued.key.pemRepresentation)
    )
    let config = Peer.Config.defaults(mode: .single) { config in
      config.name = "edge"
      config.security = security
      config.connect = [try! Peer.Target(parsing: "hub@127.0.0.1:1")]
    }
    #expect {
      _ = try Peer(config: config) { $0.text }
    } throws: { "\($0)".contains("this peer dials, but its certificate <PEM text> does not allow clientAuth") }
  }
}
