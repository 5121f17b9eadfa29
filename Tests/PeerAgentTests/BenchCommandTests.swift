import Foundation
import Testing

@testable import PeerAgentBench
@testable import peer_agent

/// `peer-agent bench`'s input checks and heap figure. What a bench run produces is checked by
/// scripts/bench-contract.sh, after the suite: a bench loads both cores for seconds, and the
/// suites beside this one time heartbeats and cancellations.
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
}
