private import Foundation
#if canImport(Glibc)
private import Glibc
#endif

/// A PostgreSQL server of its own, for the tests and the bench's `cluster` workload: a new cluster (`initdb`) in a temporary folder,
/// listening on a free loopback port, stopped (`pg_ctl stop -m immediate`) by ``stop()``.
///
/// As root (CI), the server runs as the `postgres` user, as PostgreSQL requires; otherwise as
/// the user running the tests. The binaries come from `PEER_AGENT_PG_BIN`, else Debian's
/// `/usr/lib/postgresql/VERSION/bin` (the newest).
package final class ScratchPostgres: Sendable {
  package let port: Int
  package let directory: String
  package let bin: String
  private let asUser: String?

  /// Where the server binaries are; `nil` when there are none (the tests that need them then
  /// say so: ``missing``).
  package static var binaries: String? {
    if let given = ProcessInfo.processInfo.environment["PEER_AGENT_PG_BIN"], !given.isEmpty {
      return FileManager.default.isExecutableFile(atPath: "\(given)/initdb") ? given : nil
    }
    // Debian's layout, newest version first.
    let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
    return versions.compactMap(Int.init).sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin" }
      .first { FileManager.default.isExecutableFile(atPath: "\($0)/initdb") }
  }

  /// Whether the tests that need PostgreSQL can run here.
  package static var isAvailable: Bool { Self.binaries != nil }

  /// Why they cannot, for the skip's comment.
  package static let missing =
    "PostgreSQL server binaries not found (Debian: apt-get install postgresql; or set PEER_AGENT_PG_BIN): the cluster tests did not run"

  /// A certificate and key for the server: it then speaks TLS (`ssl=on`) as well as plaintext.
  package struct TLS: Sendable {
    package var certificatePEM: String
    package var privateKeyPEM: String

    package init(certificatePEM: String, privateKeyPEM: String) {
      self.certificatePEM = certificatePEM
      self.privateKeyPEM = privateKeyPEM
    }
  }

  /// Starts a new server on `addresses` (loopback ones), with TLS when `tls` is given.
  package init(tls: TLS? = nil, addresses: [String] = ["127.0.0.1"]) throws {
    guard let bin = Self.binaries else { throw Failure(message: Self.missing) }
    self.bin = bin
    self.asUser = getuid() == 0 ? "postgres" : nil
    let directory = "/tmp/peer-agent-pg-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    self.directory = directory
    if let user = self.asUser {
      try FileManager.default.setAttributes([.ownerAccountName: user], ofItemAtPath: directory)
    }
    let asUser = self.asUser
    let initdb = try Self.run("\(bin)/initdb", ["-D", "\(directory)/data", "-A", "trust", "-U", "postgres", "--no-sync"], as: asUser)
    guard initdb.status == 0 else { throw Failure(message: "initdb failed: \(initdb.output)") }
    var options = "-c listen_addresses=\(addresses.joined(separator: ",")) -c max_connections=200"
    if let tls {
      // The server reads its key as its own user, and refuses one others can read.
      for (file, contents) in [("server.crt", tls.certificatePEM), ("server.key", tls.privateKeyPEM)] {
        let path = "\(directory)/\(file)"
        guard FileManager.default.createFile(atPath: path, contents: Data(contents.utf8), attributes: [.posixPermissions: 0o600]) else {
          throw Failure(message: "cannot write \(path)")
        }
        if let user = self.asUser { try FileManager.default.setAttributes([.ownerAccountName: user], ofItemAtPath: path) }
      }
      options += " -c ssl=on -c ssl_cert_file=\(directory)/server.crt -c ssl_key_file=\(directory)/server.key"
    }
    var started: (status: Int32, output: String) = (1, "")
    var port = 0
    // A port picked free can be taken before the server binds it: try a few.
    for _ in 0 ..< 5 {
      port = try freePort()
      started = try Self.run(
        "\(bin)/pg_ctl",
        [
          "-D", "\(directory)/data", "-l", "\(directory)/log", "-w", "-t", "30",
          "-o", "-p \(port) -k \(directory) \(options)", "start",
        ],
        as: asUser
      )
      if started.status == 0 { break }
    }
    guard started.status == 0 else {
      let log = (try? String(contentsOfFile: "\(directory)/log", encoding: .utf8)) ?? ""
      throw Failure(message: "pg_ctl start failed: \(started.output)\n\(log)")
    }
    self.port = port
    self.options = options
  }

  /// The server's options (`-o` of pg_ctl), for ``start()``.
  private let options: String

  /// Stops the server (connections closed, the data kept): a database that goes away.
  package func pause() throws {
    let stopped = try self.runAsServerUser("\(self.bin)/pg_ctl", ["-D", "\(self.directory)/data", "-m", "fast", "-w", "stop"])
    guard stopped.status == 0 else { throw Failure(message: "pg_ctl stop failed: \(stopped.output)") }
  }

  /// Starts it again on the same port, after ``pause()``.
  package func resume() throws {
    let started = try self.runAsServerUser(
      "\(self.bin)/pg_ctl",
      ["-D", "\(self.directory)/data", "-l", "\(self.directory)/log", "-w", "-t", "30", "-o", "-p \(self.port) -k \(self.directory) \(self.options)", "start"]
    )
    guard started.status == 0 else { throw Failure(message: "pg_ctl start failed: \(started.output)") }
  }

  /// The URL `--cluster` takes, for database `postgres`.
  package var url: String { "postgresql://postgres@127.0.0.1:\(self.port)/postgres" }

  /// Stops the server at once and removes its folder.
  package func stop() {
    _ = try? self.runAsServerUser("\(self.bin)/pg_ctl", ["-D", "\(self.directory)/data", "-m", "immediate", "-w", "stop"])
    try? FileManager.default.removeItem(atPath: self.directory)
  }

  private func runAsServerUser(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try Self.run(executable, arguments, as: self.asUser)
  }

  /// Runs a server binary with its output in a file, its input from /dev/null and no other
  /// descriptor of this process (`posix_spawn`, closing every descriptor from 3): `pg_ctl
  /// start` leaves the server holding what it was given, and a pipe of the tests' — their
  /// own, or a peer process's — would then never reach its end. (Foundation's `Process` also
  /// missed runuser's exit here.)
  private static func run(_ executable: String, _ arguments: [String], as user: String?) throws -> (status: Int32, output: String) {
    let outputFile = "/tmp/peer-agent-pg-out-\(UUID().uuidString.prefix(8))"
    defer { try? FileManager.default.removeItem(atPath: outputFile) }
    let argv = user.map { ["/usr/sbin/runuser", "-u", $0, "--", executable] + arguments } ?? [executable] + arguments
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // glibc ≥ 2.34 has it; Swift's Glibc module does not declare it.
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
      throw Failure(message: "this C library has no posix_spawn_file_actions_addclosefrom_np (glibc 2.34 or later)")
    }
    _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
    let cArguments = argv.map { strdup($0) } + [nil]
    defer { for argument in cArguments { free(argument) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, environ)
    guard spawned == 0 else { throw Failure(message: "cannot start \(argv[0]): \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exitStatus, (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? "")
  }

  package struct Failure: Error, CustomStringConvertible {
    package var message: String
    package init(message: String) { self.message = message }
    package var description: String { self.message }
  }

  /// Runs SQL with psql; returns what it printed (unaligned, tuples only).
  package func psql(_ sql: String) throws -> String {
    let result = try Tool.run("\(self.bin)/psql", ["-h", "127.0.0.1", "-p", "\(self.port)", "-U", "postgres", "-d", "postgres", "-At", "-c", sql])
    guard result.status == 0 else { throw Failure(message: "psql: \(result.output)") }
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
  }
}
