internal import ArgumentParser
private import Foundation
internal import PeerAgent
internal import PeerAgentBench

struct Bench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Compare single- and dual-channel mode with raw grpc-swift-2, in the same run.",
    discussion: """
      Runs the same workloads in each mode and each direction (dialer-to-listener and \
      listener-to-dialer): ping-pong (one request in flight: latency), pipelined (a window of \
      requests in flight: throughput) for each payload size, the same in SQLite storage and on \
      one event loop, fan-out (one listener sending to many dialers by identity, on one event \
      loop and on one per core), connections (many idle dialers on one listener: memory per \
      link, handshakes per second, time until all are back after a listener restart) and \
      recovery (time from a listener restart to the first successful reply) and cluster (two hubs \
      on one PostgreSQL: a hub sending to an agent on the other hub against the hub it is on). Each side is a \
      separate peer-agent process. `raw` is the baseline: \
      the same Contact traffic with plain grpc-swift-2 calls on the generated stubs, the same \
      transport and TLS, and no PeerAgent logic; the table gives PeerAgent ÷ raw.

      Build in release mode for real figures: swift run -c release peer-agent bench
      """
  )

  @Flag(help: "A first look in under a minute: fewer requests, one repeat, small payloads, 10 dialers for fan-out.")
  var quick = false

  @Option(help: "Repeats per cell (min/median/max are reported).")
  var repeats: Int?

  @Option(help: "Requests in flight for pipelined loads.")
  var window: Int = 64

  @Option(help: ArgumentHelp("Payload sizes in bytes for pipelined loads.", valueName: "B,B,…"))
  var payloads: String?

  @Option(help: "Dialers for the fan-out workload.")
  var fanout: Int?

  @Option(help: "Idle dialers for the connections workload (default 2000; with --quick, 200).")
  var connections: Int?

  @Option(help: "Requests per ping-pong repeat.")
  var pingPongRequests: Int?

  @Option(help: "Requests per pipelined repeat.")
  var pipelinedRequests: Int?

  @Option(help: ArgumentHelp("Modes to run.", valueName: "raw,single,dual"))
  var modes: String = "raw,single,dual"

  @Option(help: ArgumentHelp(
    "Workloads to run (default: all).",
    valueName: BenchPlan.allWorkloads.joined(separator: ",")
  ))
  var workloads: String?

  @Option(help: ArgumentHelp(
    "Run each worker under COMMAND (split on spaces), e.g. 'valgrind --tool=callgrind': to profile the peers. Workers then end gracefully, so the profiler writes its output.",
    valueName: "COMMAND"
  ))
  var workerPrefix: String?

  @Option(help: ArgumentHelp(
    "The PostgreSQL database of the cluster workload (its tables are made there). Default: a scratch server of the bench's own, from Debian's postgresql binaries (skipped when there are none).",
    valueName: "postgresql://USER@HOST:PORT/DB"
  ))
  var clusterDatabase: String?

  @Flag(help: "Plaintext instead of mutual TLS.")
  var insecure = false

  @Option(help: ArgumentHelp(
    "Directory of the interop environment with grpcio (made by scripts/interop.sh); the grpcio cells are skipped when it is missing.",
    valueName: "DIR"
  ))
  var grpcio: String = ".build/interop"

  @Flag(help: "Skip the grpcio cells.")
  var noGrpcio = false

  @Option(help: ArgumentHelp("Write every figure as JSON to FILE.", valueName: "FILE"))
  var json: String?

  @Option(help: ArgumentHelp("Write a Markdown report with SVG charts to DIR.", valueName: "DIR"))
  var report: String?

  func validate() throws {
    let modes = self.modes.split(separator: ",").map(String.init)
    guard !modes.isEmpty, modes.allSatisfy({ ["raw", "single", "dual"].contains($0) }) else {
      throw ValidationError("--modes takes raw, single and dual, comma-separated")
    }
    if let workloads = self.workloads {
      let names = workloads.split(separator: ",").map(String.init)
      guard !names.isEmpty, names.allSatisfy(BenchPlan.allWorkloads.contains) else {
        throw ValidationError("--workloads takes \(BenchPlan.allWorkloads.joined(separator: ", ")), comma-separated")
      }
    }
    if let prefix = self.workerPrefix {
      guard let program = prefix.split(separator: " ").first else {
        throw ValidationError("--worker-prefix takes a command, e.g. 'valgrind --tool=callgrind'")
      }
      guard BenchPlan.executable(named: String(program)) != nil else {
        throw ValidationError("--worker-prefix: no program '\(program)' (not executable, or not on PATH)")
      }
    }
    if let payloads = self.payloads {
      guard payloads.split(separator: ",").allSatisfy({ Int($0).map { (1 ... 4_000_000).contains($0) } ?? false }) else {
        throw ValidationError("--payloads takes sizes in bytes (1 to 4000000), comma-separated")
      }
    }
    if let database = self.clusterDatabase {
      do { _ = try Peer.Config.Cluster.Database(parsing: database) } catch let error as PeerAgentError {
        throw ValidationError("--cluster-database: \(error.message)")
      }
    }
    guard self.window >= 1, (self.repeats ?? 1) >= 1, (self.fanout ?? 1) >= 1 else {
      throw ValidationError("--window, --repeats and --fanout must be at least 1")
    }
    guard (2 ... 10_000).contains(self.connections ?? 2) else {
      throw ValidationError("--connections takes 2 to 10000 dialers")
    }
  }

  func run() async throws {
    let plan = BenchPlan(
      quick: self.quick,
      repeats: self.repeats ?? (self.quick ? 1 : 3),
      window: self.window,
      payloads: self.payloads.map { $0.split(separator: ",").compactMap { Int($0) } } ?? (self.quick ? [16, 1024] : [16, 1024, 65536]),
      fanout: self.fanout ?? (self.quick ? 10 : 100),
      connections: self.connections ?? (self.quick ? 200 : 2000),
      pingPong: self.pingPongRequests ?? (self.quick ? 1000 : 5000),
      pipelined: self.pipelinedRequests ?? (self.quick ? 10000 : 50000),
      modes: self.modes.split(separator: ",").map(String.init),
      workloads: Set(self.workloads.map { $0.split(separator: ",").map(String.init) } ?? BenchPlan.allWorkloads),
      workerPrefix: self.workerPrefix.map { prefix in
        let words = prefix.split(separator: " ").map(String.init)
        return [BenchPlan.executable(named: words[0]) ?? words[0]] + words.dropFirst()
      } ?? [],
      tls: !self.insecure,
      grpcio: self.noGrpcio ? nil : BenchPlan.findGRPCIO(self.grpcio),
      clusterDatabase: self.clusterDatabase
    )
    if plan.grpcio == nil && !self.noGrpcio {
      FileHandle.standardError.write(Data("note: no grpcio environment in \(self.grpcio) (run scripts/interop.sh once): skipping the grpcio cells\n".utf8))
    }
    #if DEBUG
    FileHandle.standardError.write(Data("""
      WARNING: this is a debug build; its figures say little about production. For real figures:
               swift run -c release peer-agent bench

      """.utf8))
    #endif
    let runner = try BenchRunner(plan: plan)
    let results = try await runner.run()
    print(BenchReport.table(results))
    if let report = self.report {
      do {
        try BenchReport.write(results, to: report)
      } catch {
        throw CommandFailure(message: "cannot write the report to \(report): \(error.localizedDescription)")
      }
      FileHandle.standardError.write(Data("wrote \(report)/README.md and its charts\n".utf8))
    }
    if let json = self.json {
      do {
        let directory = (json as NSString).deletingLastPathComponent
        if !directory.isEmpty {
          try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try BenchReport.json(results).write(toFile: json, atomically: true, encoding: .utf8)
      } catch {
        throw CommandFailure(message: "cannot write \(json): \(error.localizedDescription)")
      }
      FileHandle.standardError.write(Data("wrote \(json)\n".utf8))
    }
    let missing = results.cells.filter { !$0.hasFigures }
    if !missing.isEmpty {
      throw CommandFailure(message: "\(missing.count) cell(s) produced no figures: \(missing.map(\.label).joined(separator: "; "))")
    }
  }
}
