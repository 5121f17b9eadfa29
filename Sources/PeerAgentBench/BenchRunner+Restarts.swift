internal import Foundation
internal import PeerAgentTestSupport

/// The workloads that kill and restart the listener: many idle links coming back, and the time
/// to the first reply.
extension BenchRunner {
  /// K idle single-channel dialers on one listener: the listener's memory per link, its
  /// descriptors, the handshake rate, and the time until all K are back after the listener is
  /// killed and restarted on its port (the dialers keep the library's backoff, with jitter).
  func runConnections() async throws -> BenchResults.Cell {
    let count = self.plan.connections
    let label = "single dialer-to-listener connections \(count)"
    self.progress.show("\(label): connecting")
    let port = try freePort()
    let listenerArguments = [
      "--role", "listener", "--mode", "single", "--name", "hub", "--listen", "127.0.0.1:\(port)",
      "--connections-per-address", "\(count + 64)",
    ]
    var listener = try self.worker(listenerArguments)
    _ = try await listener.wait(for: "listening", timeout: .seconds(30))
    try await Task.sleep(for: .milliseconds(500))
    let baseline = listener.stats?.rssKiB ?? 0
    let heapBefore = try await listener.run(.init(cmd: "heap"), answer: "heap", timeout: .seconds(30)).heap
    let dialers = try self.worker([
      "--role", "dialer", "--mode", "single", "--name", "edge", "--peers", "\(count)",
      "--connect", "hub@127.0.0.1:\(port)", "--default-backoff",
    ])
    do {
      let first = try await listener.waitDistinct(for: "connected", count: count, timeout: .seconds(300))
      let times = first.compactMap(\.at)
      let span = (times.max() ?? 0) - (times.min() ?? 0)
      let handshakes = span > 0 ? Double(count - 1) / span : 0
      // Settled: what the links hold, not the handshakes' garbage.
      try await Task.sleep(for: .seconds(2))
      let held = listener.stats
      let perLink = Double(max(0, (held?.rssKiB ?? 0) - baseline)) / Double(count)
      // Where that goes: what the links' allocations hold, and what is left resident once the
      // allocator gives back what the handshakes freed.
      let heap = try await listener.run(.init(cmd: "heap"), answer: "heap", timeout: .seconds(30)).heap
      let trimmed = try await listener.run(.init(cmd: "heap", trim: true), answer: "heap", timeout: .seconds(30)).heap
      func perLinkKiB(_ after: Int?, _ before: Int?) -> Double? {
        guard let after, let before else { return nil }
        return (Double(max(0, after - before)) / Double(count) * 10).rounded() / 10
      }
      let heapPerLink = perLinkKiB(heap?.inUseKiB, heapBefore?.inUseKiB)
      let trimmedPerLink = perLinkKiB(trimmed?.rssKiB, heapBefore?.rssKiB)
      self.progress.show("\(label): restarting the listener")
      listener.kill()
      let restarted = Date().timeIntervalSince1970
      listener = try WorkerProcess(launch: listener.launch, arguments: listener.arguments, graceful: listener.graceful)
      let again = try await listener.waitDistinct(for: "connected", count: count, timeout: .seconds(300))
      let back = (again.compactMap(\.at).max() ?? restarted) - restarted
      let dialerPeak = dialers.stats?.peakRSSKiB
      await listener.stop()
      await dialers.stop()
      self.progress.finished(
        "\(label): \(String(format: "%.1f", perLink)) KiB per link (heap in use \(heapPerLink.map { "\($0)" } ?? "?"), after a trim \(trimmedPerLink.map { "\($0)" } ?? "?")), \(Int(handshakes)) handshakes/s, all back in \(String(format: "%.2f", back)) s"
      )
      return BenchResults.Cell(
        mode: "single", direction: "dialer-to-listener", workload: "connections", eventLoops: Self.cores,
        payloadBytes: 0, window: 0, requests: 0, errors: 0, requestsPerS: 0, requestsPerSMin: 0, requestsPerSMax: 0,
        p50Us: 0, p90Us: 0, p99Us: 0, p999Us: 0, repeats: [],
        peakRssKibListener: held?.peakRSSKiB, peakRssKibDialer: dialerPeak,
        connectionsListener: held?.connections, openFilesListener: held?.openFiles,
        connections: count, rssPerLinkKib: (perLink * 10).rounded() / 10,
        handshakesPerS: handshakes.rounded(), reconnectAllS: (back * 100).rounded() / 100,
        heapPerLinkKib: heapPerLink, rssPerLinkTrimmedKib: trimmedPerLink
      )
    } catch {
      await listener.stop()
      await dialers.stop()
      throw error
    }
  }

  func runRecovery(mode: String) async throws -> BenchResults.Cell {
    self.progress.show("\(mode) recovery: restarting the listener")
    let port = try freePort()
    let (listener, dialer) = try await self.startPair(mode: mode, listenPort: port)
    let arguments = listener.arguments
    listener.kill()
    let restarted = Date().timeIntervalSince1970
    let replacement = try WorkerProcess(launch: listener.launch, arguments: arguments, graceful: listener.graceful)
    let probed: BenchProtocol.Event
    do {
      probed = try await dialer.run(.init(cmd: "probe", to: mode == "raw" ? [] : ["hub"], timeout: 30), answer: "probed", timeout: .seconds(40))
    } catch {
      await dialer.stop()
      await replacement.stop()
      throw error
    }
    await dialer.stop()
    await replacement.stop()
    let milliseconds = ((probed.at ?? restarted) - restarted) * 1000
    self.progress.finished("\(mode) recovery: \(String(format: "%.1f", milliseconds)) ms from restart to first reply")
    return BenchResults.Cell(
      mode: mode, direction: "dialer-to-listener", workload: "recovery", payloadBytes: 5, window: 1,
      requests: 1, errors: 0, requestsPerS: 0, requestsPerSMin: 0, requestsPerSMax: 0,
      p50Us: milliseconds * 1000, p90Us: milliseconds * 1000, p99Us: milliseconds * 1000, p999Us: milliseconds * 1000,
      repeats: [], recoveryMs: (milliseconds * 10).rounded() / 10
    )
  }
}
