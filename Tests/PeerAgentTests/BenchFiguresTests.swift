import Foundation
import Testing

@testable import PeerAgentBench
@testable import peer_agent

@Suite("Bench figures")
struct BenchFiguresTests {
  @Test("Percentiles are exact order statistics")
  func percentiles() {
    let summary = LatencySummary(microseconds: (1 ... 1000).map(Double.init).shuffled())
    #expect(summary.count == 1000)
    #expect(summary.p50 == 500)
    #expect(summary.p90 == 900)
    #expect(summary.p99 == 990)
    #expect(summary.p999 == 999)
    #expect(summary.max == 1000)
    #expect(summary.cdf.first?[1] ?? 0 > 0)
    #expect(summary.cdf.last == [1000, 1])
    #expect(LatencySummary(microseconds: []).p50 == 0)
  }

  @Test("Ratios compare each PeerAgent cell with raw (and grpcio) for the same direction, workload and payload")
  func ratios() {
    func cell(_ mode: String, _ direction: String, _ workload: String, rate: Double, p50: Double, p99: Double) -> BenchResults.Cell {
      BenchResults.Cell(
        mode: mode, direction: direction, workload: workload, payloadBytes: 16, window: 1, requests: 1, errors: 0,
        requestsPerS: rate, requestsPerSMin: rate, requestsPerSMax: rate, p50Us: p50, p90Us: p50, p99Us: p99, p999Us: p99,
        repeats: []
      )
    }
    let cells = BenchRunner.withRatios([
      cell("raw", "dialer-to-listener", "ping-pong", rate: 1000, p50: 100, p99: 200),
      cell("grpcio", "dialer-to-listener", "ping-pong", rate: 500, p50: 200, p99: 400),
      cell("single", "dialer-to-listener", "ping-pong", rate: 800, p50: 90, p99: 300),
      cell("dual", "listener-to-dialer", "ping-pong", rate: 800, p50: 90, p99: 300),
    ])
    #expect(cells[2].ratioVsRawThroughput == 0.8)
    #expect(cells[2].ratioVsRawP99 == 1.5)
    #expect(cells[2].ratioVsGrpcioP50 == 0.45)
    #expect(cells[3].ratioVsRawThroughput == nil)
    #expect(cells[0].ratioVsRawThroughput == nil)
  }

  @Test("The JSON names the fields scripts read")
  func jsonFields() throws {
    let results = BenchResults(
      machine: .current(tls: true),
      cells: [
        BenchResults.Cell(
          mode: "single", direction: "dialer-to-listener", workload: "ping-pong", payloadBytes: 16, window: 1,
          requests: 10, errors: 0, requestsPerS: 1, requestsPerSMin: 1, requestsPerSMax: 1, p50Us: 1, p90Us: 1,
          p99Us: 1, p999Us: 1, repeats: [], ratioVsRawThroughput: 1, ratioVsRawP99: 1, ratioVsGrpcioP50: 0.5
        )
      ]
    )
    let object = try #require(try JSONSerialization.jsonObject(with: Data(BenchReport.json(results).utf8)) as? [String: Any])
    #expect(object["machine"] != nil)
    let cell = try #require((object["cells"] as? [[String: Any]])?.first)
    for key in ["mode", "direction", "workload", "payload_bytes", "requests_per_s", "p50_us", "p99_us", "ratio_vs_raw_throughput", "ratio_vs_raw_p99", "ratio_vs_grpcio_p50"] {
      #expect(cell[key] != nil, "\(key)")
    }
  }
}
