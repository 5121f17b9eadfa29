import Foundation
import PeerAgentTestSupport
import Testing

/// What a user sees on the paths a new user and an operator walk (issue 34): typos found
/// first, exits that say what happened, Ctrl-C that says what it waits for, a health probe.
/// Real `peer-agent` processes; the assertions read their output.
@Suite("The operator's path: what the user reads")
struct OperatorPathTests {
  @Test(
    "A misspelt flag or command is the first thing said, with the nearest name",
    arguments: [
      (["run", "--name", "hub", "--lsiten", "127.0.0.1:7000"], "unknown option '--lsiten' for 'run' (did you mean '--listen'?)"),
      (["run", "--name", "hub", "--mode", "single", "--conect", "hub@127.0.0.1:1", "--certs", "x"], "unknown option '--conect' for 'run' (did you mean '--connect'?)"),
      (["rn", "--name", "hub"], "unknown command 'rn' (did you mean 'run'?)"),
      (["status", "--metrix", "127.0.0.1:1"], "unknown option '--metrix' for 'status' (did you mean '--metrics'?)"),
    ]
  )
  func typosFirst(arguments: [String], says: String) async throws {
    let run = try await PeerProcess.runToCompletion(arguments)
    #expect(run.status == 64, "\(run.error)")
    #expect(run.error.contains(says), "\(run.error)")
    #expect(run.error.split(separator: "\n").count == 1, "one line: \(run.error)")
  }

  @Test("Values that look like flags and --flag=value forms are not taken for typos")
  func valuesAreNotTypos() async throws {
    // A value after an option, whatever it looks like, is the option's: the error is the
    // real one (a bad jitter), not an unknown option.
    let run = try await PeerProcess.runToCompletion([
      "run", "--name", "hub", "--mode=single", "--listen", "127.0.0.1:0", "--insecure", "--backoff-jitter", "-1",
    ])
    #expect(run.status != 0 && !run.error.contains("unknown option"), "\(run.error)")
  }

  @Test("Ctrl-C with a request unanswered says what it waits for; a second Ctrl-C stops at once; the exit says what is left, in words")
  func controlC() async throws {
    let certs = try TrustProcessTests.certificates("hub,edge")
    let state = certs + "-state"
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: state)
    }
    // Nothing listens there: the line stays unanswered.
    let edge = try PeerProcess([
      "run", "--name", "edge", "--mode", "single", "--connect", "hub@127.0.0.1:\(try freePort())", "--certs", certs,
      "--state-dir", state, "--shutdown-grace", "60",
    ])
    edge.send("hello")
    #expect(await Self.eventually { edge.lines.contains("queued for hub: hello") }, "\(edge.lines)")
    edge.interrupt()
    #expect(
      await Self.eventually { edge.log.contains("waiting up to 60 s for 1 unanswered request and 0 being handled (Ctrl-C again to stop now)") },
      "\(edge.log)"
    )
    #expect(edge.isRunning, "the first Ctrl-C waits for the grace period")
    edge.interrupt()
    // Far within the 60 s grace period: the second Ctrl-C cut it short.
    let status = await edge.waitForExit(timeout: .seconds(30))
    #expect(status != nil, "still running 30 s after the second Ctrl-C: \(edge.log)")
    #expect(edge.log.contains("stopping now: 1 request left without a reply"), "\(edge.log)")
    #expect(edge.lines.contains("stopped: 1 request still without a reply (kept in the state folder: sent again at the next start)"), "\(edge.lines)")
    #expect(!edge.lines.contains { $0.hasPrefix("error:") }, "\(edge.lines)")
  }

  @Test("A quiet exit says nothing about counters at 0; a peer that dials its own name is warned")
  func quietExitAndOwnName() async throws {
    let certs = try TrustProcessTests.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let hub = try PeerProcess(["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", certs, "--in-memory"])
    #expect(await Self.eventually { hub.lines.contains { $0.hasPrefix("listening on ") } }, "\(hub.log)")
    hub.stop()
    #expect(await hub.waitForExit() == 0)
    #expect(!hub.lines.contains { $0.contains("unanswered") || $0.hasPrefix("stopped") }, "\(hub.lines)")

    let twin = try PeerProcess([
      "run", "--name", "hub", "--mode", "single", "--connect", "hub@127.0.0.1:\(try freePort())", "--certs", certs, "--in-memory",
    ])
    #expect(await Self.eventually { twin.log.contains("WARNING: --name hub dials hub, its own name") }, "\(twin.log)")
    twin.kill()
  }

  @Test("peer-agent health: SERVING and exit 0 from a running peer; NOT_SERVING while it drains; a refused or absent peer exits 1 saying why")
  func health() async throws {
    let certs = try TrustProcessTests.certificates("hub,edge")
    let other = try TrustProcessTests.certificates("edge")
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: other)
    }
    let hub = try PeerProcess([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", certs, "--in-memory",
      "--output", "json", "--shutdown-grace", "30",
    ])
    defer { hub.kill() }
    let address = try #require(await hub.event("listening")?["address"] as? String, "\(hub.log)")
    let serving = try await PeerProcess.runToCompletion(["health", "hub@\(address)", "--certs", certs, "--name", "edge"])
    #expect(serving.status == 0 && serving.output == "SERVING\n", "\(serving)")

    // The name pinned is checked, as a dialer checks it.
    let wrongName = try await PeerProcess.runToCompletion(["health", "edge@\(address)", "--certs", certs, "--name", "edge"])
    #expect(wrongName.status == 1 && wrongName.error.contains("certificate"), "\(wrongName)")
    // A probe of another CA is refused.
    let otherCA = try await PeerProcess.runToCompletion(["health", "hub@\(address)", "--certs", other, "--name", "edge"])
    #expect(otherCA.status == 1 && otherCA.error.contains("no health answer"), "\(otherCA)")
    // Nothing there.
    let absent = try await PeerProcess.runToCompletion(["health", "127.0.0.1:\(try freePort())", "--certs", certs, "--name", "edge", "--timeout", "2"])
    #expect(absent.status == 1 && absent.error.contains("no health answer"), "\(absent)")

    // Draining: a request held in flight keeps the hub in its grace period.
    let edge = try PeerProcess([
      "run", "--name", "edge", "--mode", "single", "--connect", "hub@\(address)", "--certs", certs, "--in-memory",
      "--exec", "sleep 10; echo late",
    ])
    defer { edge.kill() }
    #expect(await hub.event("connected") != nil, "\(hub.log)")
    hub.send("@edge slow")
    #expect(await hub.event("queued") != nil)
    hub.stop()
    var drained: (status: Int32, output: String, error: String) = (0, "", "")
    for _ in 0 ..< 100 {
      drained = try await PeerProcess.runToCompletion(["health", "hub@\(address)", "--certs", certs, "--name", "edge"])
      if drained.output == "NOT_SERVING\n" { break }
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(drained.status == 1 && drained.output == "NOT_SERVING\n", "\(drained)")
  }

  static func eventually(within limit: Duration = .seconds(20), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now.advanced(by: limit)
    while ContinuousClock.now < deadline {
      if condition() { return true }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
  }
}
