private import Foundation

/// The bench's output: a table for the terminal, JSON, and a Markdown report with SVG charts.
package enum BenchReport {
  package static func table(_ results: BenchResults) -> String {
    let m = results.machine
    var lines = [
      "peer-agent bench — \(m.date), \(m.cores) cores, \(m.cpu), Swift \(m.swift), \(m.build) build, \(m.tls ? "mutual TLS" : "plaintext")",
      "",
      Self.row([
        "mode", "direction", "workload", "payload", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU s/1k", "÷raw", "÷raw p99",
        "÷grpcio p50", "÷memory", "÷1 loop",
      ]),
    ]
    let ratio = { (value: Double?) in value.map { String(format: "%.2f", $0) } ?? "" }
    for cell in results.cells {
      let workload = cell.workload + cell.variant
      switch cell.workload {
      case "recovery":
        lines.append(Self.row([cell.mode, cell.direction, "recovery", "", "", String(format: "%.1f ms", cell.recoveryMs ?? 0)]))
        continue
      case "connections":
        lines.append(
          Self.row([
            cell.mode, cell.direction, workload, "", "", "",
            "\(cell.connections ?? 0) idle links: \(ratio(cell.rssPerLinkKib)) KiB each (heap in use \(ratio(cell.heapPerLinkKib)), after a trim \(ratio(cell.rssPerLinkTrimmedKib))), \(Int(cell.handshakesPerS ?? 0)) handshakes/s, all back \(ratio(cell.reconnectAllS)) s after a restart, \(cell.openFilesListener ?? 0) fds",
          ])
        )
        continue
      case "cluster":
        lines.append(
          Self.row([
            cell.mode, cell.direction, "cluster " + (cell.window == 1 ? "ping-pong" : "pipelined"), Self.bytes(cell.payloadBytes),
            String(Int(cell.requestsPerS)), String(Int(cell.p50Us)), String(Int(cell.p99Us)), String(Int(cell.p999Us)), "",
            cell.ratioVsSameHubThroughput.map { "÷same hub: \(ratio($0)) req/s, \(ratio(cell.ratioVsSameHubP50)) p50" } ?? "",
          ])
        )
        continue
      default:
        break
      }
      // ÷raw: p50 for ping-pong, throughput against the best raw for pipelined, else throughput.
      let versusRaw =
        cell.workload == "ping-pong" ? cell.ratioVsRawP50 : cell.workload == "pipelined" ? cell.ratioVsBestRawThroughput : cell.ratioVsRawThroughput
      lines.append(
        Self.row([
          cell.mode, cell.direction, workload, Self.bytes(cell.payloadBytes),
          String(Int(cell.requestsPerS)), String(Int(cell.p50Us)), String(Int(cell.p99Us)), String(Int(cell.p999Us)),
          cell.cpuSecondsPerThousand.map { String(format: "%.3f", $0) } ?? "",
          ratio(versusRaw), ratio(cell.ratioVsRawP99), ratio(cell.ratioVsGrpcioP50), ratio(cell.ratioVsMemoryThroughput),
          ratio(cell.workload == "ping-pong" ? cell.ratioVsOneLoopP50 : cell.ratioVsOneLoopThroughput),
        ])
      )
    }
    return lines.joined(separator: "\n")
  }

  private static func row(_ columns: [String]) -> String {
    let widths = [12, 19, 19, 8, 8, 10, 8, 9, 9, 6, 9, 12, 8, 8]
    return zip(columns, widths).map { $0.padding(toLength: max($1, $0.count), withPad: " ", startingAt: 0) }.joined(separator: " ")
  }

  static func bytes(_ count: Int) -> String {
    count >= 1024 ? "\(count / 1024) KiB" : "\(count) B"
  }

  package static func json(_ results: BenchResults) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(results), as: UTF8.self)
  }

  /// Writes `DIR/README.md`, `DIR/latency-cdf.svg`, `DIR/throughput.svg` and `DIR/bench.json`.
  package static func write(_ results: BenchResults, to directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = { (file: String) in (directory as NSString).appendingPathComponent(file) }
    try Self.json(results).write(toFile: path("bench.json"), atomically: true, encoding: .utf8)
    try Self.cdfChart(results).write(toFile: path("latency-cdf.svg"), atomically: true, encoding: .utf8)
    try Self.throughputChart(results).write(toFile: path("throughput.svg"), atomically: true, encoding: .utf8)
    let m = results.machine
    let markdown = """
      # peer-agent bench

      \(m.date) · \(m.host) · \(m.cores) cores, \(m.memoryGib) GiB, \(m.cpu) · \(m.os) · Swift \(m.swift) · \(m.build) build · \(m.tls ? "mutual TLS" : "plaintext")

      Command: `\(m.command)`

      ![Ping-pong latency CDF](latency-cdf.svg)

      ![Pipelined throughput](throughput.svg)

      ```
      \(Self.table(results))
      ```

      Figures are medians over the repeats (each cell lists min and max in `bench.json`). `÷raw` is
      PeerAgent's figure divided by raw grpc-swift-2's for the same direction, workload and payload:
      p50 for ping-pong (below 1 is better), throughput against the best of raw and raw-defaults for
      pipelined (above 1 is better). `÷memory` is SQLite storage's throughput divided by memory's;
      `÷1 loop` is one event loop per core divided by one loop (p50 for ping-pong, else throughput).

      """
    try markdown.write(toFile: path("README.md"), atomically: true, encoding: .utf8)
  }

  private static let colors = [
    "raw": "#7f7f7f", "raw-defaults": "#bcbd22", "grpcio": "#2ca02c", "single": "#1f77b4", "dual": "#d62728",
  ]

  static func cdfChart(_ results: BenchResults) -> String {
    let cells = results.cells.filter { $0.workload == "ping-pong" && $0.cdf != nil && $0.storage == "memory" && !$0.isOneLoopVariant }
    let maxLatency = max(1, cells.compactMap { $0.cdf?.last?.first }.map { min($0, cells.map(\.p99Us).max() ?? $0) }.max() ?? 1) * 1.2
    var svg = SVG(width: 720, height: 420, title: "Ping-pong round trip: latency CDF (µs), one request in flight")
    svg.axes(xLabel: "latency (µs)", yLabel: "fraction of requests ≤", xMax: maxLatency, yMax: 1)
    for (index, cell) in cells.enumerated() {
      let dashed = cell.direction == "listener-to-dialer"
      let points = (cell.cdf ?? []).filter { $0[0] <= maxLatency }.map { (x: $0[0] / maxLatency, y: $0[1]) }
      svg.line(points, color: Self.colors[cell.mode] ?? "#000", dashed: dashed)
      svg.legend(index: index, text: "\(cell.mode) \(cell.direction) (p50 \(Int(cell.p50Us)) µs)", color: Self.colors[cell.mode] ?? "#000", dashed: dashed)
    }
    return svg.render()
  }

  static func throughputChart(_ results: BenchResults) -> String {
    let cells = results.cells.filter { $0.workload == "pipelined" && $0.storage == "memory" && !$0.isOneLoopVariant }
    let group = { (cell: BenchResults.Cell) in
      "\(cell.direction == "dialer-to-listener" ? "d→l" : "l→d") \(Self.bytes(cell.payloadBytes))"
    }
    let groups = Array(Set(cells.map(group))).sorted()
    let maxRate = max(1, cells.map(\.requestsPerSMax).max() ?? 1) * 1.1
    var svg = SVG(width: 720, height: 420, title: "Pipelined throughput (requests/s), window \(cells.first?.window ?? 0); d→l: dialer to listener")
    svg.axes(xLabel: "", yLabel: "requests/s", xMax: 1, yMax: maxRate, xTicks: false)
    let modes = ["raw-defaults", "raw", "single", "dual"].filter { mode in cells.contains { $0.mode == mode } }
    let groupWidth = 1.0 / Double(max(1, groups.count))
    for (g, name) in groups.enumerated() {
      for (i, mode) in modes.enumerated() {
        guard let cell = cells.first(where: { group($0) == name && $0.mode == mode }) else { continue }
        let barWidth = groupWidth * 0.8 / Double(modes.count)
        svg.bar(x: Double(g) * groupWidth + groupWidth * 0.1 + Double(i) * barWidth, width: barWidth, height: cell.requestsPerS / maxRate, color: Self.colors[mode] ?? "#000")
      }
      svg.label(x: Double(g) * groupWidth + groupWidth / 2, text: name)
    }
    for (index, mode) in modes.enumerated() {
      svg.legend(index: index, text: mode, color: Self.colors[mode] ?? "#000", dashed: false)
    }
    return svg.render()
  }
}
