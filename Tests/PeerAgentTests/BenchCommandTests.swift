import Foundation
import Testing

@testable import peer_agent

/// `peer-agent bench` as a script drives it: which workloads run, workers under a prefix, and
/// what it says about bad input. Checks what ran, never how fast.
@Suite("peer-agent bench", .serialized)
struct BenchCommandTests {
  @Test("Bad --workloads and --worker-prefix are usage errors that name what is accepted")
  func badInput() async throws {
    let workloads = try await PeerProcess.runToCompletion(["bench", "--workloads", "ping-pong,nope"])
    #expect(workloads.status == 64)
    #expect(workloads.error.contains("--workloads takes ping-pong, pipelined, fan-out, connections, recovery"), "\(workloads.error)")

    let empty = try await PeerProcess.runToCompletion(["bench", "--workloads", ","])
    #expect(empty.status == 64)

    let prefix = try await PeerProcess.runToCompletion(["bench", "--worker-prefix", "no-such-profiler --flag"])
    #expect(prefix.status == 64)
    #expect(prefix.error.contains("--worker-prefix: no program 'no-such-profiler'"), "\(prefix.error)")
  }

  @Test("--workloads ping-pong runs only ping-pong, every worker under --worker-prefix, and each worker stops")
  func workloadsUnderPrefix() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-prefix-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }

    // A prefix that records each worker it starts, then becomes it.
    let marks = "\(directory)/started"
    let wrapper = "\(directory)/wrap.sh"
    try "#!/bin/sh\necho \"$*\" >> '\(marks)'\nexec \"$@\"\n".write(toFile: wrapper, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper)

    let json = "\(directory)/bench.json"
    let result = try await PeerProcess.runToCompletion([
      "bench", "--quick", "--repeats", "1", "--modes", "single", "--no-grpcio",
      "--workloads", "ping-pong", "--ping-pong-requests", "10",
      "--worker-prefix", wrapper, "--json", json,
    ])
    #expect(result.status == 0, "\(result.error)")

    let report = try #require(
      JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
    )
    let cells = try #require(report["cells"] as? [[String: Any]])
    #expect(!cells.isEmpty)
    #expect(Set(cells.compactMap { $0["workload"] as? String }) == ["ping-pong"])
    #expect(Set(cells.compactMap { $0["mode"] as? String }).contains("single"))
    #expect(cells.allSatisfy { ($0["p50_us"] as? Double ?? 0) > 0 }, "\(cells)")

    // Each cell starts its workers through the prefix; none started without it.
    let started = try String(contentsOfFile: marks, encoding: .utf8).split(separator: "\n")
    #expect(started.count >= cells.count, "\(started)")
    #expect(started.allSatisfy { $0.contains("bench-worker") }, "\(started)")
  }

  @Test("The connections workload's heap figure reads glibc's malloc_info totals, not one arena's")
  func heapFromMallocInfo() throws {
    let xml = """
      <malloc version="1">
      <heap nr="0">
      <sizes>
      </sizes>
      <total type="fast" count="1" size="96"/>
      <total type="rest" count="3" size="4096"/>
      <system type="current" size="135168"/>
      <system type="max" size="135168"/>
      </heap>
      <total type="fast" count="2" size="1024"/>
      <total type="rest" count="5" size="102400"/>
      <total type="mmap" count="1" size="1048576"/>
      <system type="current" size="2097152"/>
      <system type="max" size="2097152"/>
      <aspace type="total" size="2097152"/>
      </malloc>
      """
    let (inUse, free) = BenchProtocol.Heap.parse(mallocInfo: xml)
    #expect(free == (1024 + 102_400) / 1024)
    #expect(inUse == (2_097_152 + 1_048_576 - 1024 - 102_400) / 1024)

    // And this process's own: something is in use, and holding 64 MiB more shows (by far more
    // than the suites running beside this one allocate or free meanwhile).
    let before = BenchProtocol.Heap.now(trimming: false)
    let held = [UInt8](repeating: 1, count: 64 << 20)
    let after = BenchProtocol.Heap.now(trimming: true)
    #expect(before.inUseKiB > 0 && before.rssKiB > 0)
    #expect(after.inUseKiB - before.inUseKiB >= 32 << 10, "\(before) \(after)")
    withExtendedLifetime(held) {}
  }

  @Test("The connections workload counts every link the listener holds, past /proc's first page")
  func connectionsCounted() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-connections-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let json = "\(directory)/bench.json"
    let result = try await PeerProcess.runToCompletion([
      "bench", "--quick", "--repeats", "1", "--no-grpcio", "--workloads", "connections",
      "--connections", "40", "--json", json,
    ])
    #expect(result.status == 0, "\(result.error)")
    let report = try #require(
      JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
    )
    let cell = try #require((report["cells"] as? [[String: Any]])?.first { $0["workload"] as? String == "connections" })
    #expect(cell["connections"] as? Int == 40)
    // 40 links (past the first page of /proc/PID/net/tcp, which holds 27), as TCP connections
    // and as descriptors (plus the listener's own few). Small: the suites beside it share two cores.
    #expect(cell["connections_listener"] as? Int == 40, "\(cell)")
    #expect((cell["open_files_listener"] as? Int ?? 0) >= 40, "\(cell)")
    #expect((cell["heap_per_link_kib"] as? Double ?? 0) > 0, "\(cell)")
  }
}
