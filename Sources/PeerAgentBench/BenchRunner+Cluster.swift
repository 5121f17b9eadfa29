internal import Foundation
internal import PeerAgentTestSupport
internal import PeerAgent
private import Synchronization

/// The `cluster` workload: two hubs (`peer-agent run --cluster`) on one PostgreSQL and one
/// agent connected to hub-2. The same load is sent by hub-2 (same hub) and by hub-1 (across
/// the hubs: recorded by hub-1, claimed and delivered by hub-2, its reply taken back from the
/// database): ping-pong (one in flight: latency) and pipelined (many in flight: throughput).
/// The processes are the real command line, driven through standard input; latencies are the
/// `rtt_ms` of their `reply` events.
extension BenchRunner {
  func runCluster() async throws -> [BenchResults.Cell] {
    let database: ScratchPostgres?
    let url: String
    if let given = self.plan.clusterDatabase {
      url = given
      database = nil
    } else {
      guard ScratchPostgres.isAvailable else {
        FileHandle.standardError.write(Data("note: no PostgreSQL server binaries (Debian: postgresql) and no --cluster-database: skipping the cluster cells\n".utf8))
        return []
      }
      self.progress.show("cluster: starting a scratch PostgreSQL")
      let server = try ScratchPostgres()
      database = server
      url = server.url
    }
    defer { database?.stop() }
    let certificates = self.certificates + "-cluster"
    try DevelopmentCertificates.write(names: ["hub-1", "hub-2", "agent"], to: certificates)
    defer { try? FileManager.default.removeItem(atPath: certificates) }
    let ports = (try freePort(), try freePort())
    func hub(_ name: String, _ port: Int) throws -> LineProcess {
      try LineProcess(self.executable, [
        "run", "--name", name, "--mode", "single", "--listen", "127.0.0.1:\(port)", "--certs", certificates,
        "--cluster", url, "--output", "json", "--log-level", "error", "--max-in-flight", "100000",
      ])
    }
    let hub1 = try hub("hub-1", ports.0)
    let hub2 = try hub("hub-2", ports.1)
    defer {
      hub1.stop()
      hub2.stop()
    }
    _ = try await hub1.wait(for: "listening")
    _ = try await hub2.wait(for: "listening")
    let agent = try LineProcess(self.executable, [
      "run", "--name", "agent", "--mode", "single", "--connect", "hub-2@127.0.0.1:\(ports.1),hub-1@127.0.0.1:\(ports.0)",
      "--certs", certificates, "--in-memory", "--output", "json", "--log-level", "error",
    ])
    defer { agent.stop() }
    _ = try await agent.wait(for: "connected")
    _ = try await hub2.wait(for: "connected")
    // hub-1 can reach the agent once hub-2 holds its lease: one round trip proves it.
    hub1.send(["@agent warm-up"])
    _ = try await hub1.wait(for: "reply", count: 1, timeout: .seconds(30))
    hub2.send(["@agent warm-up"])
    _ = try await hub2.wait(for: "reply", count: 1, timeout: .seconds(30))

    let pingPong = self.plan.quick ? 100 : 500
    let pipelined = self.plan.quick ? 1000 : 5000
    var cells: [BenchResults.Cell] = []
    for (direction, sender) in [("same-hub", hub2), ("cross-hub", hub1)] {
      var repeats: [BenchResults.Repeat] = []
      var latencies: [Double] = []
      for run in 0 ..< self.plan.repeats {
        self.progress.show("cluster \(direction) ping-pong, repeat \(run + 1)")
        let measured = try await sender.pingPong(count: pingPong, to: "agent")
        repeats.append(measured.repeat)
        latencies += measured.latencies
      }
      cells.append(Self.clusterCell(direction: direction, window: 1, requests: pingPong, repeats: repeats, latencies: latencies))
      repeats = []
      latencies = []
      for run in 0 ..< self.plan.repeats {
        self.progress.show("cluster \(direction) pipelined, repeat \(run + 1)")
        let measured = try await sender.pipelined(count: pipelined, to: "agent")
        repeats.append(measured.repeat)
        latencies += measured.latencies
      }
      cells.append(Self.clusterCell(direction: direction, window: pipelined, requests: pipelined, repeats: repeats, latencies: latencies))
    }
    let same = cells.filter { $0.direction == "same-hub" }
    for index in cells.indices where cells[index].direction == "cross-hub" {
      guard let twin = same.first(where: { $0.window == cells[index].window }) else { continue }
      cells[index].ratioVsSameHubThroughput = Self.ratio(cells[index].requestsPerS, twin.requestsPerS)
      cells[index].ratioVsSameHubP50 = Self.ratio(cells[index].p50Us, twin.p50Us)
    }
    for cell in cells {
      self.progress.finished(
        "cluster \(cell.direction) \(cell.window == 1 ? "ping-pong" : "pipelined"): \(Int(cell.requestsPerS)) req/s, p50 \(Int(cell.p50Us)) µs, p99 \(Int(cell.p99Us)) µs"
      )
    }
    return cells
  }

  private static func ratio(_ a: Double, _ b: Double) -> Double? { b > 0 && a > 0 ? ((a / b) * 100).rounded() / 100 : nil }

  private static func clusterCell(
    direction: String,
    window: Int,
    requests: Int,
    repeats: [BenchResults.Repeat],
    latencies: [Double]
  ) -> BenchResults.Cell {
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> Double {
      guard !sorted.isEmpty else { return 0 }
      return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
    let rates = repeats.map(\.requestsPerS).sorted()
    return BenchResults.Cell(
      mode: "single", direction: direction, workload: "cluster", storage: "postgresql", payloadBytes: 20, window: window,
      requests: requests, errors: 0,
      requestsPerS: rates.isEmpty ? 0 : rates[rates.count / 2], requestsPerSMin: rates.first ?? 0, requestsPerSMax: rates.last ?? 0,
      p50Us: percentile(0.5), p90Us: percentile(0.9), p99Us: percentile(0.99), p999Us: percentile(0.999),
      repeats: repeats
    )
  }
}

/// A `peer-agent run` process driven through its standard input, its JSON events collected.
final class LineProcess: Sendable {
  private let process: Process
  private let input: Pipe
  private final class Collected: Sendable {
    let events = Mutex<[[String: String]]>([])
  }
  private let collected = Collected()

  init(_ executable: URL, _ arguments: [String]) throws {
    self.process = Process()
    self.process.executableURL = executable
    self.process.arguments = arguments
    self.input = Pipe()
    let output = Pipe()
    self.process.standardInput = self.input
    self.process.standardOutput = output
    self.process.standardError = FileHandle.nullDevice
    let collected = self.collected
    LineReader.read(output.fileHandleForReading) { lines in
      let parsed = lines.compactMap { line -> [String: String]? in
        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?.mapValues { "\($0)" }
      }
      collected.events.withLock { $0 += parsed }
    }
    try self.process.run()
  }

  func send(_ lines: [String]) {
    self.input.fileHandleForWriting.write(Data(lines.map { $0 + "\n" }.joined().utf8))
  }

  func count(_ name: String) -> Int { self.collected.events.withLock { $0.lazy.filter { $0["event"] == name }.count } }

  /// Waits until `count` events named `name` have come (or an `error` event: it is thrown).
  @discardableResult
  func wait(for name: String, count: Int = 1, timeout: Duration = .seconds(60)) async throws -> [String: String] {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
      let (found, error): ([String: String]?, [String: String]?) = self.collected.events.withLock { events in
        let matching = events.lazy.filter { $0["event"] == name }
        let found = matching.count >= count ? matching.reversed().first : nil
        return (found, events.first { $0["event"] == "error" && $0["id"] != nil })
      }
      if let error { throw BenchFailure(message: "cluster bench: \(error["message"] ?? "a request failed")") }
      if let found { return found }
      guard self.process.isRunning else { throw BenchFailure(message: "cluster bench: a peer-agent process ended early") }
      try await Task.sleep(for: .milliseconds(1))
    }
    throw BenchFailure(message: "cluster bench: no '\(name)' event within \(timeout)")
  }

  /// One request at a time.
  func pingPong(count: Int, to peer: String) async throws -> (repeat: BenchResults.Repeat, latencies: [Double]) {
    let before = self.count("reply")
    let start = ContinuousClock.now
    for index in 0 ..< count {
      self.send(["@\(peer) ping \(index)"])
      try await self.wait(for: "reply", count: before + index + 1)
    }
    return self.figures(since: before, count: count, elapsed: ContinuousClock.now - start)
  }

  /// All at once.
  func pipelined(count: Int, to peer: String) async throws -> (repeat: BenchResults.Repeat, latencies: [Double]) {
    let before = self.count("reply")
    let start = ContinuousClock.now
    self.send((0 ..< count).map { "@\(peer) load \($0)" })
    try await self.wait(for: "reply", count: before + count, timeout: .seconds(300))
    return self.figures(since: before, count: count, elapsed: ContinuousClock.now - start)
  }

  private func figures(since before: Int, count: Int, elapsed: Duration) -> (repeat: BenchResults.Repeat, latencies: [Double]) {
    let latencies = self.collected.events.withLock { events in
      events.filter { $0["event"] == "reply" }.dropFirst(before).compactMap { $0["rtt_ms"].flatMap(Double.init) }.map { $0 * 1000 }
    }
    let sorted = latencies.sorted()
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return (
      BenchResults.Repeat(
        requestsPerS: Double(count) / max(seconds, 1e-9),
        p50Us: sorted.isEmpty ? 0 : sorted[sorted.count / 2],
        p99Us: sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
      ),
      latencies
    )
  }

  func stop() {
    guard self.process.isRunning else { return }
    try? self.input.fileHandleForWriting.close()
    self.process.terminate()
    self.process.waitUntilExit()
  }
}
