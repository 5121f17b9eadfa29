private import Foundation

extension BenchPlan {
  /// The path of the program `name`: itself when it has a slash, else the first on PATH.
  package static func executable(named name: String) -> String? {
    let files = FileManager.default
    if name.contains("/") { return files.isExecutableFile(atPath: name) ? name : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { files.isExecutableFile(atPath: $0) }
  }

  package static func findGRPCIO(_ directory: String) -> BenchPlan.GRPCIO? {
    let root = FileManager.default.currentDirectoryPath
    let base = directory.hasPrefix("/") ? directory : (root as NSString).appendingPathComponent(directory)
    let python = (base as NSString).appendingPathComponent("venv/bin/python")
    let generated = (base as NSString).appendingPathComponent("gen")
    let script = (root as NSString).appendingPathComponent("Tests/Interop/bench_grpcio.py")
    let files = FileManager.default
    guard files.isExecutableFile(atPath: python), files.fileExists(atPath: script),
      files.fileExists(atPath: (generated as NSString).appendingPathComponent("contact/contact_pb2.py"))
    else { return nil }
    return .init(python: python, script: script, pythonPath: "\(generated):\(generated)/contact")
  }
}

package struct BenchPlan: Sendable {
  package static let allWorkloads = ["ping-pong", "pipelined", "fan-out", "connections", "recovery", "cluster"]

  /// Where grpcio runs from, when it is available.
  package struct GRPCIO: Sendable {
    package var python: String
    package var script: String
    package var pythonPath: String
  }

  package var quick: Bool
  package var repeats: Int
  package var window: Int
  package var payloads: [Int]
  package var fanout: Int
  package var connections: Int
  package var pingPong: Int
  package var pipelined: Int
  package var modes: [String]
  /// The workloads to run, of `allWorkloads`.
  package var workloads: Set<String>
  /// A command each worker runs under (a profiler), or none.
  package var workerPrefix: [String]
  package var tls: Bool
  package var grpcio: GRPCIO?
  /// The PostgreSQL database of the `cluster` workload; `nil`: a scratch server of its own.
  package var clusterDatabase: String? = nil

  package init(
    quick: Bool, repeats: Int, window: Int, payloads: [Int], fanout: Int, connections: Int, pingPong: Int, pipelined: Int,
    modes: [String], workloads: Set<String>, workerPrefix: [String], tls: Bool, grpcio: GRPCIO?, clusterDatabase: String? = nil
  ) {
    self.quick = quick
    self.repeats = repeats
    self.window = window
    self.payloads = payloads
    self.fanout = fanout
    self.connections = connections
    self.pingPong = pingPong
    self.pipelined = pipelined
    self.modes = modes
    self.workloads = workloads
    self.workerPrefix = workerPrefix
    self.tls = tls
    self.grpcio = grpcio
    self.clusterDatabase = clusterDatabase
  }
}
