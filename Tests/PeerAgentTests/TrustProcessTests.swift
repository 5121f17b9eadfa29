import ContactProto
import Crypto
import Foundation
import PeerAgentTestSupport
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftASN1
import Testing
import X509

@testable import PeerAgent
@testable import peer_agent

/// The security review's attacks, against `peer-agent run` processes on loopback, each with
/// certificates the test makes: every one must fail, with a clear reason on both sides.
@Suite("Trust, against processes", .serialized)
struct TrustProcessTests {
  /// A certificate folder with `names`, made by `peer-agent certs`.
  static func certificates(_ names: String, in directory: String? = nil) throws -> String {
    let directory = directory
      ?? FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-trust-\(UUID().uuidString)").path
    let made = try PeerProcess.runToCompletion(["certs", "--out", directory, "--names", names])
    #expect(made.status == 0, "\(made.error)")
    return directory
  }

  /// A second folder with the same CA and a new certificate and key for `name`: what a holder
  /// of the CA (or of `peer-agent certs`) can make.
  static func secondIdentity(_ name: String, from certs: String) throws -> String {
    let other = certs + "-second"
    try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    for file in ["ca.pem", "ca-key.pem"] {
      try FileManager.default.copyItem(atPath: "\(certs)/\(file)", toPath: "\(other)/\(file)")
    }
    let made = try PeerProcess.runToCompletion(["certs", "--out", other, "--names", name])
    #expect(made.status == 0, "\(made.error)")
    return other
  }

  private let common = ["--mode", "single", "--output", "json", "--in-memory"]

  /// A plain grpc-swift client transport to the listener at `address`, presenting `name`'s
  /// certificate from `certs`: what a hostile or older peer of the CA dials with.
  static func client(of name: String, certs: String, to address: String) throws -> HTTP2ClientTransport.Posix {
    let hub = try PeerAddress(parsing: address)
    let folder = CertificateDirectory(certs)
    return try HTTP2ClientTransport.Posix(
      target: .ipv4(address: hub.host, port: hub.port),
      transportSecurity: .mTLS(
        certificateChain: [.file(path: folder.certificate(for: name), format: .pem)],
        privateKey: .file(path: folder.privateKey(for: name), format: .pem)
      ) { tls in
        tls.trustRoots = .certificates([.file(path: folder.authorityCertificate, format: .pem)])
        tls.serverCertificateVerification = .noHostnameVerification
      }
    )
  }

  private func startHub(_ certs: String, _ extra: [String] = []) async throws -> (PeerProcess, String) {
    let hub = try PeerProcess(["run", "--name", "hub", "--listen", "127.0.0.1:0", "--certs", certs] + self.common + extra)
    let listening = try #require(await hub.event("listening"), "hub log: \(hub.log)")
    return (hub, try #require(listening["address"] as? String))
  }

  private func edge(_ name: String, certs: String, to address: String, _ extra: [String] = []) throws -> PeerProcess {
    try PeerProcess(["run", "--name", name, "--connect", "hub@\(address)", "--certs", certs] + self.common + extra)
  }

  @Test("A second certificate for a connected name is refused with both key fingerprints; the real peer keeps its link")
  func nameTakeover() async throws {
    let certs = try Self.certificates("hub,edge")
    let impostorCerts = try Self.secondIdentity("edge", from: certs)
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: impostorCerts)
    }
    let realKey = try await PeerProcess.runToCompletion(["certs", "--from", certs, "--fingerprint", "edge"]).output
      .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "edge=", with: "")
    let impostorKey = try await PeerProcess.runToCompletion(["certs", "--from", impostorCerts, "--fingerprint", "edge"]).output
      .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "edge=", with: "")
    #expect(realKey.hasPrefix("sha256:") && impostorKey.hasPrefix("sha256:") && realKey != impostorKey)

    let (hub, address) = try await self.startHub(certs)
    defer { hub.terminate() }
    let edge = try self.edge("edge", certs: certs, to: address)
    defer { edge.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")

    let impostor = try self.edge("edge", certs: impostorCerts, to: address)
    defer { impostor.terminate() }
    let refused = await hub.event("error") { ($0["message"] as? String)?.contains("one name, one key") == true }
    let message = try #require(refused?["message"] as? String, "hub log: \(hub.log)")
    #expect(message.contains(realKey) && message.contains(impostorKey), "\(message)")
    #expect(hub.log.contains("connected.key=\(realKey)") && hub.log.contains("presented.key=\(impostorKey)"))
    let told = await impostor.event("error") { ($0["message"] as? String)?.contains("the listener refused this peer") == true }
    #expect(told != nil, "impostor log: \(impostor.log)")

    // @edge still reaches the real edge, every time, and the link never moved.
    for index in 0 ..< 5 { hub.send("@edge ping \(index)") }
    for index in 0 ..< 5 {
      #expect(await hub.event("reply", where: { ($0["text"] as? String)?.contains("ping \(index)") == true }) != nil, "hub: \(hub.log)")
    }
    #expect(edge.count { $0["event"] == "request" } == 5)
    #expect(impostor.count { $0["event"] == "request" } == 0)
    #expect(hub.count { $0["event"] == "connected" && $0["peer"] == "edge" } == 1, "the real edge's link was displaced")
  }

  @Test("A dialer refused for one name, one key backs off like any other refusal: a few redials, not hundreds")
  func refusedDialerBacksOff() async throws {
    let certs = try Self.certificates("hub,edge")
    let impostorCerts = try Self.secondIdentity("edge", from: certs)
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: impostorCerts)
    }
    let (hub, address) = try await self.startHub(certs)
    defer { hub.terminate() }
    let edge = try self.edge("edge", certs: certs, to: address)
    defer { edge.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")
    // The impostor dials through a proxy that counts its connections.
    let proxy = try TCPProxy(upstream: try PeerAddress(parsing: address))
    let port = try await proxy.start()
    let impostor = try self.edge("edge", certs: impostorCerts, to: "127.0.0.1:\(port)", ["--backoff-initial", "0.05", "--backoff-max", "1"])
    defer { impostor.terminate() }
    #expect(await impostor.event("error") { ($0["message"] as? String)?.contains("one name, one key") == true } != nil, "\(impostor.log)")
    // 0.05 s doubling up to 1 s: about ten tries in 6 s, however slow the machine. Without
    // the backoff, each try followed the last at the initial delay: dozens.
    try await Task.sleep(for: .seconds(6))
    let tries = proxy.accepted
    impostor.terminate()
    await proxy.stop()
    print("refused dialer: \(tries) connections in 6 s")
    #expect(tries <= 16, "the refused dialer connected \(tries) times in 6 s")
  }

  @Test("--allow serves only the listed peers; a pinned key must match; refusals are clear on both sides")
  func allowlist() async throws {
    let certs = try Self.certificates("hub,edge,edge2,edge3")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let fingerprints = try await PeerProcess.runToCompletion(["certs", "--from", certs, "--fingerprint", "edge,edge2"]).output
      .split(separator: "\n").map(String.init)
    #expect(fingerprints.count == 2)
    let edge2Key = fingerprints[1].replacingOccurrences(of: "edge2=", with: "")
    let impostor = try Self.secondIdentity("edge2", from: certs)
    defer { try? FileManager.default.removeItem(atPath: impostor) }

    // edge by name, edge2 pinned to its key; edge3 not listed.
    let (hub, address) = try await self.startHub(certs, ["--allow", "edge,edge2=\(edge2Key)"])
    defer { hub.terminate() }
    let edge = try self.edge("edge", certs: certs, to: address)
    defer { edge.terminate() }
    let edge3 = try self.edge("edge3", certs: certs, to: address)
    defer { edge3.terminate() }
    let wrongKey = try self.edge("edge2", certs: impostor, to: address)
    defer { wrongKey.terminate() }

    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")
    let refused3 = await hub.event("error") { ($0["message"] as? String)?.contains("peer 'edge3' is not on the allowlist") == true }
    #expect(refused3 != nil, "hub log: \(hub.log)")
    let told3 = await edge3.event("error") { ($0["message"] as? String)?.contains("'hub' refused this peer: peer 'edge3' is not on the allowlist") == true }
    #expect(told3 != nil, "edge3 log: \(edge3.log)")
    let refusedKey = await hub.event("error") { ($0["message"] as? String)?.contains("the allowlist pins \(edge2Key)") == true }
    #expect(refusedKey != nil, "hub log: \(hub.log)")
    #expect(await wrongKey.event("error") { ($0["message"] as? String)?.contains("the allowlist pins") == true } != nil)

    // The listed edge2 with its own key is served.
    let edge2 = try self.edge("edge2", certs: certs, to: address)
    defer { edge2.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge2" }) != nil, "hub log: \(hub.log)")
    #expect(hub.count { $0["event"] == "connected" && ($0["peer"] == "edge3") } == 0)
  }

  @Test("--revoked refuses a revoked certificate at the handshake; SIGHUP re-reads the list and ends the links it revokes, only those")
  func revocationAndReload() async throws {
    let certs = try Self.certificates("hub,edge,edge2,gone")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    #expect(try await PeerProcess.runToCompletion(["certs", "--from", certs, "--revoke", "gone"]).status == 0)
    let list = "\(certs)/revoked.pem"
    let (hub, address) = try await self.startHub(certs, ["--revoked", list, "--log-level", "notice"])
    defer { hub.terminate() }

    let gone = try self.edge("gone", certs: certs, to: address)
    defer { gone.terminate() }
    let refused = await hub.event("error") { ($0["message"] as? String)?.contains("certificate 'gone' is revoked") == true }
    #expect(refused != nil, "hub log: \(hub.log)")
    #expect(await gone.event("error") { ($0["message"] as? String)?.contains("the listener refused this peer's certificate") == true } != nil, "gone: \(gone.log)")

    let edge = try self.edge("edge", certs: certs, to: address)
    defer { edge.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")

    let survivor = try self.edge("edge2", certs: certs, to: address)
    defer { survivor.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge2" }) != nil, "hub log: \(hub.log)")
    survivor.terminate()
    #expect(await hub.event("disconnected", where: { $0["peer"] as? String == "edge2" }) != nil)

    // Revoke edge and edge2, and tell the hub: edge's live link is ended (a revoked
    // certificate does not keep the link it opened before), a new handshake of edge2 is
    // refused, and the other links stay.
    let keeper = try self.edge("keeper", certs: try Self.certificates("keeper", in: certs), to: address)
    defer { keeper.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "keeper" }) != nil, "hub log: \(hub.log)")
    #expect(try await PeerProcess.runToCompletion(["certs", "--from", certs, "--revoke", "edge,edge2"]).status == 0)
    hub.hangUp()
    let deadline = ContinuousClock.now.advanced(by: .seconds(10))
    while !hub.log.contains("TLS material reloaded"), ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(hub.log.contains("TLS material reloaded") && hub.log.contains("revoked=3"), "hub log: \(hub.log)")
    let ended = await hub.event("error") {
      ($0["message"] as? String)?.contains("no longer authorized: certificate 'edge' is revoked") == true
    }
    #expect(ended != nil, "hub log: \(hub.log)")
    #expect(await hub.event("disconnected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")
    #expect(await edge.event("error") { ($0["message"] as? String)?.contains("ended this link: no longer authorized") == true } != nil, "edge: \(edge.log)")
    let edge2 = try self.edge("edge2", certs: certs, to: address)
    defer { edge2.terminate() }
    #expect(await hub.event("error") { ($0["message"] as? String)?.contains("certificate 'edge2' is revoked") == true } != nil, "hub log: \(hub.log)")
    hub.send("@keeper still here")
    #expect(await hub.event("reply", where: { ($0["text"] as? String)?.contains("still here") == true }) != nil, "hub: \(hub.log)")
    #expect(hub.count { $0["event"] == "disconnected" && $0["peer"] == "keeper" } == 0)

    // A broken list on reload is refused; the old one stays.
    try "not a list".write(toFile: list, atomically: true, encoding: .utf8)
    hub.hangUp()
    let brokenDeadline = ContinuousClock.now.advanced(by: .seconds(10))
    while !hub.log.contains("TLS reload refused"), ContinuousClock.now < brokenDeadline {
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(hub.log.contains("TLS reload refused"), "hub log: \(hub.log)")
  }

  @Test("A revoked peer's idle connection is closed by the reload: no stream opens on it again, in either mode's calls")
  func revocationReachesIdleConnection() async throws {
    let certs = try Self.certificates("hub,edge,keeper,spare")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    // A list to start with (the hub re-reads it on SIGHUP); edge is not on it yet.
    #expect(try await PeerProcess.runToCompletion(["certs", "--from", certs, "--revoke", "spare"]).status == 0)
    let (hub, address) = try await self.startHub(certs, ["--revoked", "\(certs)/revoked.pem", "--log-level", "notice"])
    defer { hub.terminate() }
    let transport = try Self.client(of: "edge", certs: certs, to: address)
    // What the article's client does: one call, then the connection sits idle.
    @Sendable func call(_ contact: Contact_Contact.Client<HTTP2ClientTransport.Posix>, _ text: String) async throws -> [String] {
      try await contact.sendStatus(
        options: .defaults { $0.waitForReady = false },
        requestProducer: { writer in
          var message = Contact_ClientMsg()
          message.msg = text
          try await writer.write(message)
        }
      ) { response in
        var replies: [String] = []
        for try await message in response.messages { replies.append(message.ret) }
        return replies
      }
    }
    // A peer that stays linked throughout: only the revoked one is ended.
    let keeper = try self.edge("keeper", certs: certs, to: address)
    defer { keeper.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "keeper" }) != nil, "hub log: \(hub.log)")

    try await withGRPCClient(transport: transport) { client in
      let contact = Contact_Contact.Client(wrapping: client)
      let first = try await call(contact, "before")
      #expect(first.first?.contains("before") == true, "\(first)")

      // Revoke edge while its connection is idle (no stream open) and tell the hub.
      #expect(try await PeerProcess.runToCompletion(["certs", "--from", certs, "--revoke", "edge"]).status == 0)
      hub.hangUp()
      let ended = await hub.event("error") {
        ($0["message"] as? String)?.contains("no longer authorized: certificate 'edge' is revoked") == true
      }
      #expect(ended != nil, "the idle connection was not ended; hub log: \(hub.log)")

      // The same client: its connection is gone, and a new handshake is refused. Bounded by
      // a deadline: a hub that still served it would keep getTask open.
      let bounded = CallOptions.defaults {
        $0.waitForReady = false
        $0.timeout = .seconds(10)
      }
      var codes: [String] = []
      do {
        _ = try await contact.sendStatus(
          options: bounded,
          requestProducer: { writer in
            var message = Contact_ClientMsg()
            message.msg = "after"
            try await writer.write(message)
          }
        ) { response in
          for try await _ in response.messages {}
        }
        codes.append("sendStatus answered")
      } catch {
        codes.append("sendStatus \((error as? RPCError)?.code.description ?? "\(error)")")
      }
      do {
        try await contact.getTask(Contact_Empty(), options: bounded) { response in
          for try await _ in response.messages {}
        }
        codes.append("getTask served")
      } catch {
        codes.append("getTask \((error as? RPCError)?.code.description ?? "\(error)")")
      }
      // Refused (unavailable: the handshake fails; permission denied: a stream on it), never
      // served until the deadline.
      #expect(codes.allSatisfy { $0.contains("unavailable") || $0.contains("permission") }, "\(codes)")
      client.beginGracefulShutdown()
    }
    #expect(hub.count { $0["event"] == "request" && ($0["text"] ?? "").contains("after") } == 0, "hub log: \(hub.log)")
    #expect(hub.count { $0["event"] == "connected" && $0["peer"] == "edge" } == 0, "a revoked peer was linked: \(hub.log)")
    hub.send("@keeper still here")
    #expect(await hub.event("reply", where: { ($0["text"] as? String)?.contains("still here") == true }) != nil, "hub: \(hub.log)")
  }

  @Test("A Kubernetes-style secret update (the ..data link swapped to a new folder) is seen without a signal: the revoked peer's link ends")
  func symlinkSwapReload() async throws {
    let certs = try Self.certificates("hub,edge,spare")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    #expect(try await PeerProcess.runToCompletion(["certs", "--from", certs, "--revoke", "spare"]).status == 0)
    // The secret as a kubelet mounts it: the files are links through ..data to a folder.
    let secret = certs + "-secret"
    defer { try? FileManager.default.removeItem(atPath: secret) }
    let files = ["ca.pem", "hub.pem", "hub-key.pem", "revoked.pem"]
    func publish(_ version: String) throws {
      let folder = "\(secret)/..\(version)"
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
      for file in files {
        try FileManager.default.copyItem(atPath: "\(certs)/\(file)", toPath: "\(folder)/\(file)")
      }
      // Swapped atomically, as the kubelet does: a new link renamed over the old.
      let swap = try Tool.shell("ln -sfn '..\(version)' '\(secret)/..data_tmp' && mv -T '\(secret)/..data_tmp' '\(secret)/..data'")
      #expect(swap.status == 0, "\(swap.output)")
    }
    try publish("v1")
    for file in files {
      try FileManager.default.createSymbolicLink(atPath: "\(secret)/\(file)", withDestinationPath: "..data/\(file)")
    }
    let (hub, address) = try await self.startHub(secret, ["--revoked", "\(secret)/revoked.pem", "--log-level", "notice"])
    defer { hub.terminate() }
    let edge = try self.edge("edge", certs: certs, to: address)
    defer { edge.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")

    #expect(try await PeerProcess.runToCompletion(["certs", "--from", certs, "--revoke", "edge"]).status == 0)
    try publish("v2")
    let ended = await hub.event("error", timeout: .seconds(30)) {
      ($0["message"] as? String)?.contains("no longer authorized: certificate 'edge' is revoked") == true
    }
    #expect(ended != nil, "hub log: \(hub.log)")
    #expect(hub.log.contains("trigger=a file changed"), "hub log: \(hub.log)")
  }

  @Test("Request ids are checked where they enter: a NUL or an id over 128 bytes is refused alone with invalidRequest, never handled")
  func requestIDsValidated() async throws {
    let certs = try Self.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let (hub, address) = try await self.startHub(certs, ["--log-level", "warning"])
    defer { hub.terminate() }
    let transport = try Self.client(of: "edge", certs: certs, to: address)
    let ids = ["bad\u{0}id", String(repeating: "a", count: 200), "good-id-1"]
    let results = try await withGRPCClient(transport: transport) { client in
      try await Contact_Contact.Client(wrapping: client).sendStatus(
        options: .defaults {
          $0.waitForReady = false
          $0.timeout = .seconds(20)
        },
        requestProducer: { writer in
          for id in ids {
            var message = Contact_ClientMsg()
            message.msg = "text of \(id.prefix(8))"
            message.id = id
            try await writer.write(message)
          }
        }
      ) { response in
        var results: [Contact_Result] = []
        for try await message in response.messages { results.append(message) }
        return results
      }
    }
    let byID = Dictionary(results.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    #expect(byID[ids[0]]?.code == "invalidRequest", "\(results)")
    #expect(byID[ids[1]]?.code == "invalidRequest", "\(results)")
    #expect(byID[ids[2]]?.code == "" && byID[ids[2]]?.ret.contains("ack from hub") == true, "\(results)")
    #expect(hub.count { $0["event"] == "request" } == 1, "a malformed request was handled: \(hub.parsedEvents)")
  }

  @Test("A resumed TLS session (openssl s_client -sess_in) is refused: nothing rides a ticket")
  func resumption() async throws {
    let certs = try Self.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let (hub, address) = try await self.startHub(certs)
    defer { hub.terminate() }
    let session = "\(certs)/session.pem"
    // A full handshake with edge's certificate; keep the session ticket.
    let first = try Self.sClient(address: address, certs: certs, arguments: ["-cert", "\(certs)/edge.pem", "-key", "\(certs)/edge-key.pem", "-sess_out", session])
    #expect(first.contains("New, TLSv1.3"), "\(first)")
    #expect(FileManager.default.fileExists(atPath: session), "no session ticket: \(first)")
    // Resume it without a certificate.
    let second = try Self.sClient(address: address, certs: certs, arguments: ["-sess_in", session])
    let refused = await hub.event("error") { ($0["message"] as? String)?.contains("a resumed TLS session was refused") == true }
    // BoringSSL resumes the session (the attack is real) and the listener closes it.
    #expect(second.contains("Reused, TLSv1.3"), "\(second)")
    #expect(refused != nil, "hub log: \(hub.log)")
  }

  @Test("A renewed certificate and key are picked up when the files change: new handshakes present them, links stay")
  func rotation() async throws {
    let certs = try Self.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let (hub, address) = try await self.startHub(certs, ["--log-level", "notice"])
    defer { hub.terminate() }
    let edge = try self.edge("edge", certs: certs, to: address)
    defer { edge.terminate() }
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")
    let before = try Self.serial(of: "\(certs)/hub.pem")
    #expect(try Self.sClient(address: address, certs: certs, arguments: ["-cert", "\(certs)/edge.pem", "-key", "\(certs)/edge-key.pem"]).contains("Verify return code: 0"))

    // Renew hub's certificate and key in place; no signal: the hub sees the files change.
    let renewed = try await PeerProcess.runToCompletion(["certs", "--out", certs, "--names", "hub", "--force"])
    #expect(renewed.status == 0, "\(renewed.error)")
    let after = try Self.serial(of: "\(certs)/hub.pem")
    #expect(before != after)
    let deadline = ContinuousClock.now.advanced(by: .seconds(15))
    while !hub.log.contains("TLS material reloaded"), ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(100))
    }
    #expect(hub.log.contains("trigger=a file changed"), "hub log: \(hub.log)")
    let presented = try Self.sClient(address: address, certs: certs, arguments: ["-cert", "\(certs)/edge.pem", "-key", "\(certs)/edge-key.pem", "-showcerts"])
    let presentedSerial = try Self.serial(ofPEMIn: presented)
    #expect(presentedSerial == after, "the listener still presents \(presentedSerial), not \(after)")

    // The edge's link, verified before, is still up.
    hub.send("@edge after rotation")
    #expect(await hub.event("reply", where: { ($0["text"] as? String)?.contains("after rotation") == true }) != nil, "hub: \(hub.log)")
    #expect(hub.count { $0["event"] == "disconnected" && $0["peer"] == "edge" } == 0)
  }

  @Test("A tellResult from another peer of the CA naming a request id the hub printed is dropped; the real reply still arrives")
  func forgedReplyAgainstProcess() async throws {
    let certs = try Self.certificates("hub,edge,edge2")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let (hub, address) = try await self.startHub(certs, ["--log-level", "warning"])
    defer { hub.terminate() }
    let hubAddress = try PeerAddress(parsing: address)
    let gate = Gate()
    defer { gate.open() }
    let edge = try TestPeer(
      name: "edge",
      mode: .single,
      security: .mutualTLS(directory: certs, name: "edge"),
      connect: [Peer.Target(address: hubAddress, expectedIdentity: "hub")],
      handler: { _ in
        await gate.wait()
        return "real"
      }
    )
    try await withRunningPeers([edge]) {
      #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")
      hub.send("@edge work")
      let queued = try #require(await hub.event("queued"), "hub log: \(hub.log)")
      let id = try #require(queued["id"] as? String)
      let handling = ContinuousClock.now.advanced(by: .seconds(10))
      while edge.requests.all.isEmpty, ContinuousClock.now < handling {
        try await Task.sleep(for: .milliseconds(10))
      }

      // edge2 — a valid certificate of the same CA — answers the hub's request by its id.
      let transport = try Self.client(of: "edge2", certs: certs, to: address)
      try await withGRPCClient(transport: transport) { client in
        let forged = {
          var result = Contact_Result()
          result.id = id
          result.ret = "forged"
          return result
        }()
        try await Contact_Contact.Client(wrapping: client).tellResult(
          options: .defaults { $0.waitForReady = false },
          requestProducer: { writer in try await writer.write(forged) }
        ) { response in
          _ = try response.message
        }
      }
      let dropped = ContinuousClock.now.advanced(by: .seconds(10))
      while !hub.log.contains("dropped a reply for a request sent to another peer"), ContinuousClock.now < dropped {
        try await Task.sleep(for: .milliseconds(20))
      }
      #expect(hub.log.contains("dropped a reply for a request sent to another peer"), "hub log: \(hub.log)")
      #expect(hub.log.contains("link=edge2"))
      #expect(hub.count { $0["event"] == "reply" } == 0, "the forged reply was taken")

      gate.open()
      let reply = await hub.event("reply")
      #expect(reply?["reply"] as? String == "real", "\(String(describing: reply))")
      #expect(reply?["id"] as? String == id)
      #expect(hub.count { ($0["reply"] ?? "").contains("forged") } == 0)
    }
  }

  @Test("A listener whose certificate's CN is the pinned name but whose identity is another peer's is refused")
  func commonNameImpostor() async throws {
    let certs = try Self.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let folder = CertificateDirectory(certs)
    let authority = try ChainMint.Authority(folder)
    var spec = ChainMint.Spec.peer("edge2")
    spec.commonName = "hub"
    spec.dnsNames = ["edge2", "localhost"]
    let impostor = try ChainMint.issueWithKey(spec, issuer: authority)
    let certPath = "\(certs)/impostor.pem"
    let keyPath = "\(certs)/impostor-key.pem"
    try impostor.certificate.pem.write(toFile: certPath, atomically: true, encoding: .utf8)
    try impostor.key.pemRepresentation.write(toFile: keyPath, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyPath)

    let listener = try PeerProcess([
      "run", "--name", "edge2", "--listen", "127.0.0.1:0", "--ca", folder.authorityCertificate,
      "--cert", certPath, "--key", keyPath,
    ] + self.common)
    defer { listener.terminate() }
    let listening = try #require(await listener.event("listening"), "listener log: \(listener.log)")
    let address = try #require(listening["address"] as? String)
    let dialer = try self.edge("edge", certs: certs, to: address)
    defer { dialer.terminate() }
    let refused = await dialer.event("error") {
      ($0["message"] as? String)?.contains("expected peer 'hub' but the certificate presented is 'edge2'") == true
    }
    #expect(refused != nil, "dialer log: \(dialer.log)")
    #expect(dialer.count { $0["event"] == "connected" } == 0)
  }

  @Test("Chains OpenSSL refuses are refused by a running hub: a sub-CA below a path length of 0, a CA:TRUE leaf")
  func refusedChains() async throws {
    let certs = try Self.certificates("hub")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let folder = CertificateDirectory(certs)
    // The development CA allows no sub-CA (path length 0).
    let authority = try ChainMint.Authority(folder)
    let subCA = try ChainMint.intermediate(.ca("Rogue Sub-CA"), issuer: authority)
    let deep = try ChainMint.issueWithKey(.peer("edge"), issuer: subCA)
    var caLeafSpec = ChainMint.Spec.peer("edge")
    caLeafSpec.isCA = true
    caLeafSpec.keyUsage = KeyUsage(digitalSignature: true, keyCertSign: true)
    let caLeaf = try ChainMint.issueWithKey(caLeafSpec, issuer: authority)

    let (hub, address) = try await self.startHub(certs)
    defer { hub.terminate() }
    let cases: [(String, [Certificate], P256.Signing.PrivateKey, String)] = [
      ("deep", [deep.certificate, subCA.certificate], deep.key, "has maximum path length 0, but chain has 1 subCAs"),
      ("ca-leaf", [caLeaf.certificate], caLeaf.key, "a peer's certificate must not be a CA"),
    ]
    for (label, chain, key, reason) in cases {
      let certPath = "\(certs)/\(label).pem"
      let keyPath = "\(certs)/\(label)-key.pem"
      try chain.map(\.pem).joined().write(toFile: certPath, atomically: true, encoding: .utf8)
      try key.pemRepresentation.write(toFile: keyPath, atomically: true, encoding: .utf8)
      try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyPath)
      let edge = try PeerProcess([
        "run", "--name", "edge", "--connect", "hub@\(address)", "--ca", folder.authorityCertificate,
        "--cert", certPath, "--key", keyPath,
      ] + self.common)
      defer { edge.terminate() }
      let refused = await hub.event("error") { ($0["message"] as? String)?.contains(reason) == true }
      #expect(refused != nil, "\(label): hub log: \(hub.log)")
      // The edge was warned at start that its own chain would be refused.
      let warned = ContinuousClock.now.advanced(by: .seconds(10))
      while !edge.log.contains("own certificate will be refused"), ContinuousClock.now < warned {
        try await Task.sleep(for: .milliseconds(20))
      }
      #expect(edge.log.contains("own certificate will be refused"), "\(label): \(edge.log)")
      #expect(await edge.event("error") { ($0["message"] as? String)?.contains("the listener refused this peer's certificate") == true } != nil)
      edge.terminate()
    }
    #expect(hub.count { $0["event"] == "connected" } == 0)
  }

  /// The serial number of the certificate in `path`, as OpenSSL prints it.
  static func serial(of path: String) throws -> String {
    try Self.serial(ofPEMIn: String(contentsOfFile: path, encoding: .utf8))
  }

  /// The serial number of the first PEM certificate in `text`, as OpenSSL prints it.
  static func serial(ofPEMIn text: String) throws -> String {
    guard let start = text.range(of: "-----BEGIN CERTIFICATE-----"),
      let end = text.range(of: "-----END CERTIFICATE-----", range: start.upperBound ..< text.endIndex)
    else { return "none" }
    let pem = String(text[start.lowerBound ..< end.upperBound]) + "\n"
    return try Tool.run("/usr/bin/openssl", ["x509", "-noout", "-serial"], input: pem).output
      .trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Runs `openssl s_client` against `address` with a second of HTTP/2 preface, returns its output.
  static func sClient(address: String, certs: String, arguments: [String]) throws -> String {
    let joined = (["-connect", address, "-CAfile", "\(certs)/ca.pem", "-alpn", "h2", "-tls1_3"] + arguments)
      .map { "'\($0)'" }.joined(separator: " ")
    return try Tool.shell("(printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'; sleep 1) | timeout 10 openssl s_client \(joined)").output
  }

  @Test("Start-up refuses a certificate for another name, and a key others can read, saying what to fix")
  func startupChecks() throws {
    let certs = try Self.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let mismatch = try PeerProcess.runToCompletion([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--in-memory",
      "--ca", "\(certs)/ca.pem", "--cert", "\(certs)/edge.pem", "--key", "\(certs)/edge-key.pem",
    ])
    #expect(mismatch.status != 0)
    #expect(mismatch.error.contains("is for 'edge', not for --name 'hub'"), "\(mismatch.error)")

    let key = "\(certs)/hub-key.pem"
    try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: key)
    let readable = try PeerProcess.runToCompletion([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--in-memory", "--certs", certs,
    ])
    #expect(readable.status != 0)
    #expect(readable.error.contains("can be read by group or others (mode 0644): run chmod 600 \(key)"), "\(readable.error)")

    // certs never overwrites a key without --force, and --export copies just one host's files.
    let again = try PeerProcess.runToCompletion(["certs", "--out", certs, "--names", "edge"])
    #expect(again.status != 0 && again.error.contains("add --force"), "\(again.error)")
    let export = certs + "-edge-host"
    defer { try? FileManager.default.removeItem(atPath: export) }
    let exported = try PeerProcess.runToCompletion(["certs", "--from", certs, "--export", "edge", "--out", export])
    #expect(exported.status == 0, "\(exported.error)")
    let files = try FileManager.default.contentsOfDirectory(atPath: export).sorted()
    #expect(files == ["ca.pem", "edge-key.pem", "edge.pem"])
    let mode = try FileManager.default.attributesOfItem(atPath: "\(export)/edge-key.pem")[.posixPermissions] as? NSNumber
    #expect(mode?.intValue == 0o600)
  }
}
