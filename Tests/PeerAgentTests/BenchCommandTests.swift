import Foundation
import Testing

@testable import peer_agent

/// `peer-agent bench` as a script drives it: which workloads run, workers under a prefix, and
/// what it says about bad input. Checks what ran, never how fast.
@Suite("peer-agent bench", .serialized)
struct BenchCommandTests {
  @Test("Bad --workloads and --worker-prefix are usage errors that name what is accepted")
  func badInput() throws {
    let workloads = try PeerProcess.runToCompletion(["bench", "--workloads", "ping-pong,nope"])
    #expect(workloads.status == 64)
    #expect(workloads.error.contains("--workloads takes ping-pong, pipelined, fan-out, connections, recovery"), "\(workloads.error)")

    let empty = try PeerProcess.runToCompletion(["bench", "--workloads", ","])
    #expect(empty.status == 64)

    let prefix = try PeerProcess.runToCompletion(["bench", "--worker-prefix", "no-such-profiler --flag"])
    #expect(prefix.status == 64)
    #expect(prefix.error.contains("--worker-prefix: no program 'no-such-profiler'"), "\(prefix.error)")
  }

  @Test("--workloads ping-pong runs only ping-pong, every worker under --worker-prefix, and each worker stops")
  func workloadsUnderPrefix() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-prefix-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }

    // A prefix that records each worker it starts, then becomes it.
    let marks = "\(directory)/started"
    let wrapper = "\(directory)/wrap.sh"
    try "#!/bin/sh\necho \"$*\" >> '\(marks)'\nexec \"$@\"\n".write(toFile: wrapper, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper)

    let json = "\(directory)/bench.json"
    let result = try PeerProcess.runToCompletion([
      "bench", "--quick", "--repeats", "1", "--modes", "raw,single", "--no-grpcio",
      "--workloads", "ping-pong", "--ping-pong-requests", "20",
      "--worker-prefix", wrapper, "--json", json,
    ])
    #expect(result.status == 0, "\(result.error)")

    let report = try #require(
      JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
    )
    let cells = try #require(report["cells"] as? [[String: Any]])
    #expect(!cells.isEmpty)
    #expect(Set(cells.compactMap { $0["workload"] as? String }) == ["ping-pong"])
    #expect(Set(cells.compactMap { $0["mode"] as? String }).isSuperset(of: ["raw", "single"]))
    #expect(cells.allSatisfy { ($0["p50_us"] as? Double ?? 0) > 0 }, "\(cells)")

    // Each cell starts its workers through the prefix; none started without it.
    let started = try String(contentsOfFile: marks, encoding: .utf8).split(separator: "\n")
    #expect(started.count >= cells.count, "\(started)")
    #expect(started.allSatisfy { $0.contains("bench-worker") }, "\(started)")
  }
}
