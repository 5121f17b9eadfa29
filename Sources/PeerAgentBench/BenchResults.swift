private import Foundation

/// Everything one `peer-agent bench` run measured (`--json FILE` writes it).
package struct BenchResults: Codable, Sendable {
  struct Machine: Codable, Sendable {
    var date: String
    var host: String
    var cores: Int
    var memoryGib: Double
    var cpu: String
    var os: String
    var swift: String
    var build: String
    var tls: Bool
    var command: String
  }

  struct Repeat: Codable, Sendable {
    var requestsPerS: Double
    var p50Us: Double
    var p99Us: Double
  }

  package struct Cell: Codable, Sendable {
    var mode: String
    var direction: String
    var workload: String
    /// Where both peers keep their outbox and window: `memory` or `sqlite`.
    var storage: String = "memory"
    /// Event-loop threads of each peer-agent process (`nil` for grpcio).
    var eventLoops: Int?
    var payloadBytes: Int
    var window: Int
    var requests: Int
    var errors: Int
    /// Median over the repeats, with the minimum and maximum.
    var requestsPerS: Double
    var requestsPerSMin: Double
    var requestsPerSMax: Double
    var p50Us: Double
    var p90Us: Double
    var p99Us: Double
    var p999Us: Double
    var repeats: [Repeat]
    /// User + system CPU of both processes, per 1,000 requests.
    var cpuSecondsPerThousand: Double?
    var peakRssKibListener: Int?
    var peakRssKibDialer: Int?
    var connectionsListener: Int?
    var connectionsDialer: Int?
    var openFilesListener: Int?
    var openFilesDialer: Int?
    /// Recovery only: from the listener's restart to the first successful reply.
    var recoveryMs: Double?
    var ratioVsRawThroughput: Double?
    var ratioVsRawP99: Double?
    var ratioVsGrpcioP50: Double?
    /// Ping-pong: p50 ÷ raw's (same direction).
    var ratioVsRawP50: Double?
    /// Pipelined: throughput ÷ the best of raw and raw-defaults (same direction and payload).
    var ratioVsBestRawThroughput: Double?
    /// sqlite cells: throughput ÷ the same cell in memory.
    var ratioVsMemoryThroughput: Double?
    /// Cells with more than one event loop: throughput ÷ the same cell on one loop.
    var ratioVsOneLoopThroughput: Double?
    /// Ping-pong with more than one event loop: p50 ÷ the same cell on one loop.
    var ratioVsOneLoopP50: Double?
    /// The cluster workload, across the hubs: throughput ÷ the same load on the agent's own hub.
    var ratioVsSameHubThroughput: Double?
    /// The cluster workload, across the hubs: p50 ÷ the same load on the agent's own hub.
    var ratioVsSameHubP50: Double?
    /// The connections workload: idle links held by the listener.
    var connections: Int?
    /// The connections workload: the listener's resident memory per idle link.
    var rssPerLinkKib: Double?
    /// The connections workload: mutual-TLS handshakes (and link set-ups) per second.
    var handshakesPerS: Double?
    /// The connections workload: from the listener's restart until every link is back.
    var reconnectAllS: Double?
    /// The connections workload: the listener's heap in use per idle link (glibc's `mallinfo2`):
    /// what the links hold, without what the allocator keeps after the handshakes.
    var heapPerLinkKib: Double?
    /// The connections workload: resident memory per idle link once `malloc_trim` has handed
    /// the allocator's free pages back.
    var rssPerLinkTrimmedKib: Double?
    /// The latency CDF of the median repeat: [µs, fraction].
    var cdf: [[Double]]?

    package var label: String {
      var label = "\(self.mode) \(self.direction) \(self.workload)"
      if self.workload != "recovery" && self.workload != "connections" { label += " \(self.payloadBytes) B" }
      return label + self.variant
    }

    /// What sets the cell apart from its mode's usual one: " sqlite", " 1 loop", " 2 loops".
    var variant: String {
      var variant = self.storage != "memory" ? " \(self.storage)" : ""
      if self.workload == "fan-out" || self.workload == "connections" || self.isOneLoopVariant, let loops = self.eventLoops {
        variant += loops == 1 ? " 1 loop" : " \(loops) loops"
      }
      return variant
    }

    /// A single or dual cell run on one loop to compare with the default (one per core).
    var isOneLoopVariant: Bool {
      (self.mode == "single" || self.mode == "dual") && self.eventLoops == 1 && self.workload != "fan-out"
        && ProcessInfo.processInfo.activeProcessorCount > 1
    }

    package var hasFigures: Bool {
      if self.workload == "recovery" { return (self.recoveryMs ?? 0) > 0 }
      if self.workload == "connections" {
        return (self.connections ?? 0) > 0 && (self.rssPerLinkKib ?? 0) > 0 && (self.handshakesPerS ?? 0) > 0
          && (self.reconnectAllS ?? 0) > 0
      }
      return self.requestsPerS > 0 && self.p50Us > 0 && self.p99Us > 0
    }
  }

  var machine: Machine
  package var cells: [Cell]
}

extension BenchResults.Machine {
  static func current(tls: Bool) -> Self {
    func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
    let cpu = read("/proc/cpuinfo").split(separator: "\n").first { $0.hasPrefix("model name") }
      .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
    let os = read("/etc/os-release").split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }
      .map { String($0.dropFirst(12)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) } ?? "Linux"
    #if DEBUG
    let build = "debug"
    #else
    let build = "release"
    #endif
    let formatter = ISO8601DateFormatter()
    return Self(
      date: formatter.string(from: Date()),
      host: ProcessInfo.processInfo.hostName,
      cores: ProcessInfo.processInfo.activeProcessorCount,
      memoryGib: (Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824 * 10).rounded() / 10,
      cpu: cpu,
      os: os,
      swift: Self.swiftVersion,
      build: build,
      tls: tls,
      command: (["peer-agent"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
    )
  }

  static var swiftVersion: String {
    #if swift(>=6.3)
    return "6.3"
    #elseif swift(>=6.2)
    return "6.2"
    #else
    return "6.x"
    #endif
  }
}
