import Foundation
import PeerAgentTestSupport
import Testing

@testable import PeerAgent
@testable import peer_agent

/// `peer-agent run --exec CMD`: a program answers each request, through real processes.
@Suite("--exec: a program answers each request")
struct ExecTests {
  /// A plaintext hub on loopback answering with `exec`, and an edge sending `lines` and exiting
  /// at the end of its input; returns the edge's `reply` and `error` events and its exit status.
  static func exchange(
    exec: [String],
    lines: [String]
  ) async throws -> (replies: [[String: any Sendable]], errors: [[String: any Sendable]], status: Int32?, seconds: Double, hubLog: String) {
    let port = try freePort()
    let hub = try PeerProcess(
      ["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:\(port)", "--insecure", "--in-memory", "--output", "json"] + exec
    )
    defer { hub.terminate() }
    #expect(await hub.event("listening") != nil, "\(hub.log)")
    let edge = try PeerProcess([
      "run", "--name", "edge", "--mode", "single", "--connect", "127.0.0.1:\(port)", "--insecure", "--in-memory",
      "--output", "json", "--exit-on-eof",
    ])
    defer { edge.terminate() }
    #expect(await edge.event("connected") != nil, "\(edge.log)")
    let start = ContinuousClock.now
    edge.send(lines: lines)
    edge.closeInput()
    let status = await edge.waitForExit(timeout: .seconds(60))
    let seconds = (ContinuousClock.now - start).seconds
    // The edge's last lines may still be on their way through the pipe.
    let deadline = ContinuousClock.now.advanced(by: .seconds(10))
    while edge.count(where: { $0["event"] == "reply" || $0["event"] == "error" }) < lines.count, ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(20))
    }
    var replies: [[String: any Sendable]] = []
    var errors: [[String: any Sendable]] = []
    for _ in lines {
      if let reply = await edge.event("reply", timeout: .milliseconds(10), where: { event in
        !replies.contains { ($0["id"] as? String) == (event["id"] as? String) }
      }) {
        replies.append(reply)
      }
    }
    for _ in lines {
      if let error = await edge.event("error", timeout: .milliseconds(10), where: { event in
        !errors.contains { ($0["id"] as? String) == (event["id"] as? String) }
      }) {
        errors.append(error)
      }
    }
    if replies.count + errors.count < lines.count {
      Issue.record("edge events: \(edge.parsedEvents.map { ($0["event"] ?? "?") + " " + String(($0["reply"] ?? $0["message"] ?? "").prefix(80)) }) log: \(edge.log.suffix(500))")
    }
    return (replies, errors, status, seconds, hub.log)
  }

  @Test("The program's output, trimmed, is the reply; the sender's name and the request id are in its environment")
  func replies() async throws {
    let result = try await Self.exchange(
      exec: ["--exec", #"printf '%s|%s|' "$PEER_AGENT_FROM" "${#PEER_AGENT_ID}"; tr a-z A-Z; echo"#],
      lines: ["hello", "twice as loud"]
    )
    #expect(result.status == 0)
    let texts = Set(result.replies.compactMap { $0["reply"] as? String })
    #expect(texts.count == 2, "\(result.replies)")
    for text in texts {
      #expect(text.hasPrefix("127.0.0.1:"), "PEER_AGENT_FROM is the plaintext sender's address: \(text)")
      #expect(text.contains("|32|"), "PEER_AGENT_ID is the 32-digit request id: \(text)")
    }
    #expect(texts.contains { $0.hasSuffix("|HELLO") } && texts.contains { $0.hasSuffix("|TWICE AS LOUD") })
  }

  @Test("A non-zero exit is an error reply with its status and a short reason: the command line and standard error stay in the hub's log")
  func failure() async throws {
    let result = try await Self.exchange(
      exec: ["--exec", "echo broken pipe dream >&2; exit 3 # --api-key=SECRET-KEY-42"],
      lines: ["x"]
    )
    #expect(result.status != 0, "--exit-on-eof reports the failed request")
    let message = result.errors.first?["message"] as? String ?? ""
    #expect(message.contains("exited with status 3"), "\(result.errors)")
    #expect(!message.contains("broken pipe dream"), "standard error crossed the link: \(message)")
    #expect(!message.contains("SECRET-KEY-42") && !message.contains("api-key"), "the command line crossed the link: \(message)")
    #expect(result.hubLog.contains("broken pipe dream") && result.hubLog.contains("exited with status 3"), "\(result.hubLog)")
  }

  @Test("A program that leaves a child in the background is answered when it exits; the child is killed at the timeout")
  func backgroundChild() async throws {
    // A marker only this run's children carry on their command line.
    let seconds = "71.\(Int.random(in: 100_000 ... 999_999))"
    let port = try freePort()
    // One slot: a run that held its slot past its exit would hold up the second request.
    let hub = try PeerProcess([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:\(port)", "--insecure", "--in-memory", "--output", "json",
      "--exec", "sleep \(seconds) & nohup sleep \(seconds) >/dev/null 2>&1 </dev/null & echo started",
      "--exec-timeout", "3", "--exec-concurrency", "1",
    ])
    defer { hub.terminate() }
    #expect(await hub.event("listening") != nil, "\(hub.log)")
    let edge = try PeerProcess([
      "run", "--name", "edge", "--mode", "single", "--connect", "127.0.0.1:\(port)", "--insecure", "--in-memory", "--output", "json",
    ])
    defer { edge.terminate() }
    #expect(await edge.event("connected") != nil, "\(edge.log)")
    edge.send(lines: ["a", "b"])
    let first = await edge.event("reply")
    let second = await edge.event("reply", where: { $0["id"] as? String != first?["id"] as? String })
    #expect(first?["reply"] as? String == "started" && second?["reply"] as? String == "started", "\(edge.log)")
    #expect(edge.count { $0["event"] == "error" } == 0, "\(edge.log)")
    #expect(!Self.processes(matching: "sleep \(seconds)").isEmpty, "the background children run on after the reply")
    // Killed at the timeout, with the hub still running: none of them is left.
    let deadline = ContinuousClock.now.advanced(by: .seconds(30))
    var left = Self.processes(matching: "sleep \(seconds)")
    while !left.isEmpty, ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(200))
      left = Self.processes(matching: "sleep \(seconds)")
    }
    #expect(left.isEmpty, "orphans left running: \(left); hub log: \(hub.log.suffix(2000))")
  }

  /// The pids of processes whose command line contains `text`.
  static func processes(matching text: String) -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.filter { entry in
      guard Int(entry) != nil, let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
      let line = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
      return line.contains(text) && !line.contains("peer-agent")
    }
  }

  @Test("A program that runs past --exec-timeout is killed, and the request answered with an error")
  func timeout() async throws {
    let result = try await Self.exchange(exec: ["--exec", "sleep 20", "--exec-timeout", "0.5"], lines: ["x"])
    let message = result.errors.first?["message"] as? String ?? ""
    #expect(message.contains("did not finish within"), "\(result.errors)")
    #expect(result.seconds < 15, "killed at the timeout, not left to run")
  }

  @Test("--exec-concurrency 1 runs one program at a time; every request is still answered")
  func concurrency() async throws {
    let result = try await Self.exchange(
      exec: ["--exec", "sleep 0.3; cat", "--exec-concurrency", "1"],
      lines: ["a", "b", "c", "d"]
    )
    #expect(result.status == 0)
    #expect(Set(result.replies.compactMap { $0["reply"] as? String }) == ["a", "b", "c", "d"])
    #expect(result.seconds >= 1.2, "four runs of 0.3 s one at a time take at least 1.2 s (took \(result.seconds))")
  }

  @Test("A program that does not read its input (200 KB, over a pipe's buffer), or prints nothing, still answers")
  func ignoresInput() async throws {
    // The hub's own events are not read here: a 200 KB line goes through `peer-agent run`'s
    // output, and PeerProcess's reader is not built for lines that long.
    let port = try freePort()
    let hub = try PeerProcess(
      ["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:\(port)", "--insecure", "--in-memory", "--exec", "true"]
    )
    defer { hub.terminate() }
    try await Task.sleep(for: .milliseconds(300))
    let edge = try PeerProcess([
      "run", "--name", "edge", "--mode", "single", "--connect", "127.0.0.1:\(port)", "--insecure", "--in-memory",
      "--exit-on-eof", "--output", "text",
    ])
    defer { edge.terminate() }
    edge.send(lines: [String(repeating: "z", count: 200_000)])
    edge.closeInput()
    #expect(await edge.waitForExit(timeout: .seconds(30)) == 0, "the request was answered: \(edge.log.suffix(300))")
  }
}
