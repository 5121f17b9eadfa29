import Foundation
import PeerAgent
import PeerAgentTestSupport
import Testing

/// A hub's connection to the cluster database over TLS (`sslmode`, `sslrootcert`), against a
/// PostgreSQL server the test starts with `ssl=on` and a certificate of a CA the test makes:
/// `peer-agent run --cluster` processes, and PostgreSQL's own `pg_stat_ssl` as the judge of
/// what the connection is.
@Suite(
  "Cluster database over TLS",
  .serialized,
  .enabled(if: clusterTestsCanRun, "PostgreSQL server binaries not found (Debian: apt-get install postgresql; or set PEER_AGENT_PG_BIN): the cluster tests did not run")
)
struct ClusterTLSTests {
  /// A database with TLS (its certificate carries `db`, `localhost`, 127.0.0.1 and ::1 — not
  /// 127.0.0.2, which it also listens on), its CA's file, another CA's, and a hub's certificates.
  final class Setup: Sendable {
    let postgres: TestPostgres
    let root: String
    let certs: String
    let databaseCA: String
    let otherCA: String

    init(tls: Bool = true) throws {
      self.root = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-pgtls-\(UUID().uuidString)").path
      try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
      let authority = try DevelopmentCertificates.makeAuthority()
      let server = try authority.issue(name: "db")
      self.databaseCA = "\(self.root)/db-ca.pem"
      self.otherCA = "\(self.root)/other-ca.pem"
      try authority.authority.certificatePEM.write(toFile: self.databaseCA, atomically: true, encoding: .utf8)
      try DevelopmentCertificates.makeAuthority().authority.certificatePEM.write(toFile: self.otherCA, atomically: true, encoding: .utf8)
      self.postgres = try TestPostgres(
        tls: tls ? .init(certificatePEM: server.certificatePEM, privateKeyPEM: server.privateKeyPEM) : nil,
        addresses: ["127.0.0.1", "127.0.0.2"]
      )
      self.certs = "\(self.root)/certs"
      let made = try PeerProcess.runToCompletion(["certs", "--out", self.certs, "--names", "hub-1"])
      guard made.status == 0 else { throw TestPostgres.Failure(message: "certs: \(made.error)") }
    }

    func url(host: String = "127.0.0.1", _ query: String) -> String {
      "postgresql://postgres@\(host):\(self.postgres.port)/postgres\(query.isEmpty ? "" : "?\(query)")"
    }

    func hubArguments(cluster: String) throws -> [String] {
      [
        "run", "--name", "hub-1", "--mode", "single", "--listen", "127.0.0.1:\(try freePort())", "--certs", self.certs,
        "--cluster", cluster, "--output", "json", "--log-level", "warning",
      ]
    }

    /// Connections to the database that use TLS, besides psql's own.
    func encryptedConnections() throws -> Int {
      Int(try self.postgres.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()")) ?? -1
    }

    func plaintextClientConnections() throws -> Int {
      Int(
        try self.postgres.psql(
          """
          SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE NOT s.ssl AND a.backend_type = 'client backend' AND a.client_addr IS NOT NULL AND s.pid <> pg_backend_pid()
          """
        )
      ) ?? -1
    }

    func tearDown() {
      self.postgres.stop()
      try? FileManager.default.removeItem(atPath: self.root)
    }
  }

  @Test("sslmode=verify-full: a hub connects, and PostgreSQL sees every one of its connections encrypted")
  func verifyFullConnects() async throws {
    let setup = try await offThePool { try Setup() }
    defer { setup.tearDown() }
    let hub = try PeerProcess(try setup.hubArguments(cluster: setup.url("sslmode=verify-full&sslrootcert=\(setup.databaseCA)")))
    defer { hub.kill() }
    #expect(await hub.event("listening", timeout: .seconds(60)) != nil, "the hub did not start: \(hub.log)")
    #expect(try await offThePool { try setup.encryptedConnections() } > 0)
    #expect(try await offThePool { try setup.plaintextClientConnections() } == 0)
  }

  @Test(
    "Refused with a line that says why: another CA, a name the certificate lacks, TLS to a server without it",
    arguments: [
      ("another CA", "sslmode=verify-full&sslrootcert=OTHER", "127.0.0.1", true, "does not chain to sslrootcert"),
      ("verify-ca, another CA", "sslmode=verify-ca&sslrootcert=OTHER", "127.0.0.1", true, "does not chain to sslrootcert"),
      ("not the name dialed", "sslmode=verify-full&sslrootcert=CA", "127.0.0.2", true, "is not for '127.0.0.2'"),
      ("a server without TLS", "sslmode=require", "127.0.0.1", false, "does not offer TLS"),
    ]
  )
  func refused(_ case: String, query: String, host: String, serverTLS: Bool, says: String) async throws {
    let setup = try await offThePool { try Setup(tls: serverTLS) }
    defer { setup.tearDown() }
    let query = query.replacingOccurrences(of: "OTHER", with: setup.otherCA).replacingOccurrences(of: "=CA", with: "=\(setup.databaseCA)")
    let run = try await PeerProcess.runToCompletion(try setup.hubArguments(cluster: setup.url(host: host, query)))
    print("[\(`case`)] \(run.error)")
    #expect(run.status != 0, "\(`case`): the hub started")
    #expect(run.error.contains(says), "\(`case`): \(run.error)")
    #expect(run.error.split(separator: "\n").count <= 3, "\(`case`): one line, not a trace: \(run.error)")
  }

  @Test("verify-ca accepts the right CA whatever the name dialed; require encrypts without checking")
  func verifyCAAndRequire() async throws {
    let setup = try await offThePool { try Setup() }
    defer { setup.tearDown() }
    for (host, query) in [("127.0.0.2", "sslmode=verify-ca&sslrootcert=\(setup.databaseCA)"), ("127.0.0.1", "sslmode=require")] {
      let hub = try PeerProcess(try setup.hubArguments(cluster: setup.url(host: host, query)))
      #expect(await hub.event("listening", timeout: .seconds(60)) != nil, "\(query): \(hub.log)")
      #expect(try await offThePool { try setup.encryptedConnections() } > 0, "\(query)")
      hub.kill()
    }
  }

  @Test("A database not on loopback: plaintext only when sslmode=disable is written; allow and prefer are refused")
  func plaintextRefusedOffLoopback() async throws {
    func parse(_ url: String) throws { try Peer.Config.Cluster.Database(parsing: url).checkTransport() }
    #expect(throws: PeerAgentError.self) { try parse("postgresql://u@db.example.com/peer_agent") }
    do {
      try parse("postgresql://u@10.0.0.5:5432/peer_agent")
      Issue.record("plaintext to 10.0.0.5 was accepted")
    } catch let error as PeerAgentError {
      #expect(error.message.contains("sslmode=verify-full&sslrootcert=") && error.message.contains("sslmode=disable"), "\(error.message)")
    }
    try parse("postgresql://u@db.example.com/peer_agent?sslmode=disable")
    try parse("postgresql://u@db.example.com/peer_agent?sslmode=verify-full&sslrootcert=/etc/ca.pem")
    try parse("postgresql://u@127.0.0.1/peer_agent")
    try parse("postgresql://u@[::1]:5432/peer_agent")
    for query in ["sslmode=prefer", "sslmode=allow", "sslmode=verify-full", "sslmode=disable&sslrootcert=/x", "sslmode=bogus", "application_name=x"] {
      #expect(throws: PeerAgentError.self, "\(query)") { try parse("postgresql://u@db.example.com/peer_agent?\(query)") }
    }
    // As libpq: require with a root certificate verifies the chain.
    #expect(try Peer.Config.Cluster.Database(parsing: "postgresql://u@h/d?sslmode=require&sslrootcert=/ca.pem").sslMode == .verifyCA)
    // The command line refuses it before anything starts.
    let run = try await PeerProcess.runToCompletion([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--cluster", "postgresql://u@db.example.com/d",
    ])
    #expect(run.status != 0 && run.error.contains("sslmode=disable"), "\(run.error)")
  }
}
