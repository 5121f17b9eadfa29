internal import Foundation
internal import PeerAgentTestSupport
internal import PeerAgent

/// Starts the worker processes for each cell, drives the loads, and collects the figures.
package final class BenchRunner: Sendable {
  let plan: BenchPlan
  let executable: URL
  let certificates: String
  let progress = ProgressLine()

  package init(plan: BenchPlan) throws {
    self.plan = plan
    self.executable = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
    self.certificates = FileManager.default.temporaryDirectory
      .appendingPathComponent("peer-agent-bench-\(UInt32.random(in: .min ... .max))").path
  }

  package func run() async throws -> BenchResults {
    defer { try? FileManager.default.removeItem(atPath: self.certificates) }
    if self.plan.tls {
      try DevelopmentCertificates.write(
        names: ["hub", "edge"] + (0 ..< max(self.plan.fanout, self.plan.connections)).map { "edge-\($0)" },
        to: self.certificates
      )
    }
    var cells: [BenchResults.Cell] = []
    let workloads = self.plan.workloads
    if !workloads.isDisjoint(with: ["ping-pong", "pipelined"]) {
      for mode in self.plan.modes {
        cells += try await self.runPair(mode: mode)
      }
      // What PeerAgent's transport tuning buys: raw grpc-swift with nio-transport's defaults.
      cells += try await self.runPair(mode: "raw-defaults", payloads: [16, 1024])
      if self.plan.grpcio != nil && workloads.contains("ping-pong") {
        cells += try await self.runPair(mode: "grpcio", payloads: [])
      }
      let peerModes = self.plan.modes.filter { $0 == "single" || $0 == "dual" }
      // The durable default (SQLite, group-committed) against memory.
      for mode in peerModes {
        cells += try await self.runPair(mode: mode, payloads: [16], storage: "sqlite")
      }
      // One event loop against one per core, for a single link.
      if Self.cores > 1, let mode = peerModes.first {
        cells += try await self.runPair(mode: mode, payloads: [16], eventLoops: 1)
      }
    }
    if self.plan.modes.contains("single") {
      if workloads.contains("fan-out") {
        cells.append(try await self.runFanOut(eventLoops: 1))
        if Self.cores > 1 { cells.append(try await self.runFanOut(eventLoops: Self.cores)) }
      }
      if workloads.contains("connections") { cells.append(try await self.runConnections()) }
    }
    if workloads.contains("recovery") {
      for mode in self.plan.modes {
        cells.append(try await self.runRecovery(mode: mode))
      }
    }
    if workloads.contains("cluster"), self.plan.tls, self.plan.modes.contains("single") {
      cells += try await self.runCluster()
    }
    return BenchResults(machine: .current(tls: self.plan.tls), cells: Self.withRatios(cells))
  }

  static var cores: Int { ProcessInfo.processInfo.activeProcessorCount }

  /// The event loops a worker of `mode` runs with: raw on one (its one connection's), its
  /// defaults on NIO's shared group (one per core), grpcio its own.
  static func loops(mode: String, requested: Int?) -> Int? {
    switch mode {
    case "raw": 1
    case "raw-defaults": Self.cores
    case "grpcio": nil
    default: requested ?? Self.cores
    }
  }

  // MARK: - Workers

  private var security: [String] {
    self.plan.tls ? ["--certs", self.certificates] : ["--insecure"]
  }

  func worker(_ arguments: [String]) throws -> WorkerProcess {
    let mode = arguments.firstIndex(of: "--mode").map { arguments[$0 + 1] }
    if mode == "grpcio", let grpcio = self.plan.grpcio {
      return try WorkerProcess(
        launch: [grpcio.python, grpcio.script],
        arguments: arguments + self.security,
        environment: ["PYTHONPATH": grpcio.pythonPath]
      )
    }
    return try WorkerProcess(
      launch: self.plan.workerPrefix + [self.executable.path, "bench-worker"],
      arguments: arguments + self.security,
      graceful: !self.plan.workerPrefix.isEmpty
    )
  }

  /// Starts a listener and a dialer in `mode` and waits until each has connected.
  func startPair(mode: String, listenPort: Int = 0, options: [String] = []) async throws -> (WorkerProcess, WorkerProcess) {
    switch mode {
    case "dual":
      let (hubPort, edgePort) = (listenPort == 0 ? try freePort() : listenPort, try freePort())
      let listener = try self.worker(["--role", "listener", "--mode", "dual", "--name", "hub", "--listen", "127.0.0.1:\(hubPort)", "--connect", "edge@127.0.0.1:\(edgePort)"] + options)
      let dialer = try self.worker(["--role", "dialer", "--mode", "dual", "--name", "edge", "--listen", "127.0.0.1:\(edgePort)", "--connect", "hub@127.0.0.1:\(hubPort)"] + options)
      _ = try await listener.wait(for: "connected", timeout: .seconds(30))
      _ = try await dialer.wait(for: "connected", timeout: .seconds(30))
      return (listener, dialer)
    default:
      let listener = try self.worker(["--role", "listener", "--mode", mode, "--name", "hub", "--listen", "127.0.0.1:\(listenPort)"] + options)
      let address = try await listener.wait(for: "listening", timeout: .seconds(30)).address ?? ""
      let dialer = try self.worker(["--role", "dialer", "--mode", mode, "--name", "edge", "--connect", "hub@\(address)"] + options)
      _ = try await listener.wait(for: "connected", timeout: .seconds(30))
      _ = try await dialer.wait(for: "connected", timeout: .seconds(30))
      return (listener, dialer)
    }
  }

  /// The worker options for `storage` and `eventLoops` (PeerAgent modes only).
  private static func options(mode: String, storage: String, eventLoops: Int?) -> [String] {
    guard mode == "single" || mode == "dual" else { return [] }
    var options: [String] = []
    if storage != "memory" { options += ["--storage", storage] }
    if let eventLoops { options += ["--event-loops", "\(eventLoops)"] }
    return options
  }

  // MARK: - Cells

  private func runPair(
    mode: String,
    payloads: [Int]? = nil,
    storage: String = "memory",
    eventLoops: Int? = nil
  ) async throws -> [BenchResults.Cell] {
    let (listener, dialer) = try await self.startPair(
      mode: mode,
      options: Self.options(mode: mode, storage: storage, eventLoops: eventLoops)
    )
    let tag = (storage == "memory" ? "" : " \(storage)") + (eventLoops == 1 ? " 1 loop" : "")
    var cells: [BenchResults.Cell] = []
    let pipelined = self.plan.workloads.contains("pipelined") ? payloads ?? self.plan.payloads : []
    do {
      for direction in ["dialer-to-listener", "listener-to-dialer"] {
        let (sender, target) = direction == "dialer-to-listener" ? (dialer, "hub") : (listener, "edge")
        if self.plan.workloads.contains("ping-pong") {
          cells.append(
            try await self.measure(
              mode: mode, direction: direction, workload: "ping-pong", payload: 16, window: 1,
              count: self.plan.pingPong, to: [target], sender: sender, listener: listener, dialer: dialer, tag: tag
            )
          )
        }
        for payload in pipelined {
          let count = payload >= 65536 ? max(self.plan.window * 4, self.plan.pipelined / 10) : self.plan.pipelined
          cells.append(
            try await self.measure(
              mode: mode, direction: direction, workload: "pipelined", payload: payload, window: self.plan.window,
              count: count, to: [target], sender: sender, listener: listener, dialer: dialer, tag: tag
            )
          )
        }
      }
    } catch {
      await listener.stop()
      await dialer.stop()
      throw error
    }
    let (listenerStats, dialerStats) = (listener.stats, dialer.stats)
    for index in cells.indices {
      cells[index].storage = storage
      cells[index].eventLoops = Self.loops(mode: mode, requested: eventLoops)
      cells[index].peakRssKibListener = listenerStats?.peakRSSKiB
      cells[index].peakRssKibDialer = dialerStats?.peakRSSKiB
      cells[index].connectionsListener = listenerStats?.connections
      cells[index].connectionsDialer = dialerStats?.connections
      cells[index].openFilesListener = listenerStats?.openFiles
      cells[index].openFilesDialer = dialerStats?.openFiles
    }
    await listener.stop()
    await dialer.stop()
    return cells
  }

  private func runFanOut(eventLoops: Int) async throws -> BenchResults.Cell {
    let loops = ["--event-loops", "\(eventLoops)"]
    // All the dialers come from 127.0.0.1: above the listener's default 64 per address.
    let listener = try self.worker(
      ["--role", "listener", "--mode", "single", "--name", "hub", "--listen", "127.0.0.1:0",
       "--connections-per-address", "\(self.plan.fanout + 64)"] + loops
    )
    let address = try await listener.wait(for: "listening", timeout: .seconds(30)).address ?? ""
    let dialers = try self.worker(["--role", "dialer", "--mode", "single", "--name", "edge", "--peers", "\(self.plan.fanout)", "--connect", "hub@\(address)"] + loops)
    _ = try await listener.wait(for: "connected", index: self.plan.fanout - 1, timeout: .seconds(60))
    var cell = try await self.measure(
      mode: "single", direction: "listener-to-dialer", workload: "fan-out", payload: 16,
      window: self.plan.window, count: self.plan.pipelined,
      to: (0 ..< self.plan.fanout).map { "edge-\($0)" }, sender: listener, listener: listener, dialer: dialers,
      tag: eventLoops == 1 ? " 1 loop" : " \(eventLoops) loops"
    )
    cell.eventLoops = eventLoops
    let (listenerStats, dialerStats) = (listener.stats, dialers.stats)
    cell.peakRssKibListener = listenerStats?.peakRSSKiB
    cell.peakRssKibDialer = dialerStats?.peakRSSKiB
    cell.connectionsListener = listenerStats?.connections
    cell.connectionsDialer = dialerStats?.connections
    cell.openFilesListener = listenerStats?.openFiles
    cell.openFilesDialer = dialerStats?.openFiles
    await listener.stop()
    await dialers.stop()
    return cell
  }

  private func measure(
    mode: String, direction: String, workload: String, payload: Int, window: Int, count: Int,
    to targets: [String], sender: WorkerProcess, listener: WorkerProcess, dialer: WorkerProcess, tag: String = ""
  ) async throws -> BenchResults.Cell {
    let label = "\(mode) \(direction) \(workload) \(payload) B\(tag)"
    self.progress.show(label)
    let cpuBefore = (listener.stats?.cpuSeconds ?? 0) + (dialer.stats?.cpuSeconds ?? 0)
    var results: [BenchProtocol.LoadResult] = []
    for repeatIndex in 0 ..< self.plan.repeats {
      var command = BenchProtocol.Command(cmd: "load")
      command.to = mode == "single" || mode == "dual" ? targets : []
      command.count = count
      command.window = window
      command.payload = payload
      command.warmup = repeatIndex == 0 ? max(window * 2, count / 10) : 0
      let event = try await sender.run(command, answer: "result", timeout: .seconds(600))
      if let result = event.result { results.append(result) }
    }
    let cpuAfter = (listener.stats?.cpuSeconds ?? 0) + (dialer.stats?.cpuSeconds ?? 0)
    let repeats = results.map {
      BenchResults.Repeat(requestsPerS: $0.seconds > 0 ? Double($0.requests) / $0.seconds : 0, p50Us: $0.latency.p50, p99Us: $0.latency.p99)
    }
    let byThroughput = zip(results, repeats).sorted { $0.1.requestsPerS < $1.1.requestsPerS }
    let median = byThroughput[byThroughput.count / 2]
    let medianOf = { (values: [Double]) in values.sorted()[values.count / 2] }
    let totalRequests = results.reduce(0) { $0 + $1.requests } + (self.plan.repeats > 0 ? max(window * 2, count / 10) : 0)
    let cell = BenchResults.Cell(
      mode: mode, direction: direction, workload: workload, payloadBytes: payload, window: window,
      requests: results.reduce(0) { $0 + $1.requests }, errors: results.reduce(0) { $0 + $1.errors },
      requestsPerS: median.1.requestsPerS.rounded(),
      requestsPerSMin: (repeats.map(\.requestsPerS).min() ?? 0).rounded(),
      requestsPerSMax: (repeats.map(\.requestsPerS).max() ?? 0).rounded(),
      p50Us: medianOf(results.map(\.latency.p50)), p90Us: medianOf(results.map(\.latency.p90)),
      p99Us: medianOf(results.map(\.latency.p99)), p999Us: medianOf(results.map(\.latency.p999)),
      repeats: repeats,
      cpuSecondsPerThousand: totalRequests > 0 ? ((cpuAfter - cpuBefore) / Double(totalRequests) * 1000 * 10000).rounded() / 10000 : nil,
      cdf: workload == "pipelined" && payload != 16 ? nil : median.0.latency.cdf
    )
    if let error = results.compactMap(\.firstError).first {
      FileHandle.standardError.write(Data("\n  \(label): \(cell.errors) error(s), first: \(error)\n".utf8))
    }
    self.progress.finished(
      "\(label): \(Int(cell.requestsPerS)) req/s, p50 \(Int(cell.p50Us)) µs, p99 \(Int(cell.p99Us)) µs"
    )
    return cell
  }

  /// PeerAgent ÷ raw, for each single and dual cell that has a raw twin; sqlite ÷ memory; one
  /// loop per core ÷ one loop.
  static func withRatios(_ cells: [BenchResults.Cell]) -> [BenchResults.Cell] {
    func ratio(_ a: Double, _ b: Double) -> Double? { b > 0 && a > 0 ? ((a / b) * 100).rounded() / 100 : nil }
    func twin(_ cell: BenchResults.Cell, mode: String, storage: String = "memory", loops: Int?) -> BenchResults.Cell? {
      cells.first {
        $0.mode == mode && $0.direction == cell.direction && $0.workload == cell.workload
          && $0.payloadBytes == cell.payloadBytes && $0.storage == storage && (loops == nil || $0.eventLoops == loops)
      }
    }
    return cells.map { cell in
      var cell = cell
      guard cell.mode == "single" || cell.mode == "dual", !["recovery", "connections", "cluster"].contains(cell.workload) else {
        return cell
      }
      if cell.storage != "memory", let memory = twin(cell, mode: cell.mode, loops: cell.eventLoops) {
        cell.ratioVsMemoryThroughput = ratio(cell.requestsPerS, memory.requestsPerS)
      }
      if (cell.eventLoops ?? 1) > 1, let one = twin(cell, mode: cell.mode, storage: cell.storage, loops: 1) {
        cell.ratioVsOneLoopThroughput = ratio(cell.requestsPerS, one.requestsPerS)
        if cell.workload == "ping-pong" { cell.ratioVsOneLoopP50 = ratio(cell.p50Us, one.p50Us) }
      }
      guard let raw = twin(cell, mode: "raw", loops: nil) else { return cell }
      if cell.workload == "ping-pong" {
        cell.ratioVsRawP50 = ratio(cell.p50Us, raw.p50Us)
        if let grpcio = cells.first(where: { $0.mode == "grpcio" && $0.direction == cell.direction && $0.workload == "ping-pong" }) {
          cell.ratioVsGrpcioP50 = ratio(cell.p50Us, grpcio.p50Us)
        }
      }
      if cell.workload == "pipelined" {
        let best = max(raw.requestsPerS, twin(cell, mode: "raw-defaults", loops: nil)?.requestsPerS ?? 0)
        cell.ratioVsBestRawThroughput = ratio(cell.requestsPerS, best)
      }
      cell.ratioVsRawThroughput = ratio(cell.requestsPerS, raw.requestsPerS)
      cell.ratioVsRawP99 = ratio(cell.p99Us, raw.p99Us)
      return cell
    }
  }
}
