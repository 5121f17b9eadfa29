import Foundation
import PeerAgentTestSupport
import Testing

@testable import PeerAgent
@testable import peer_agent

/// What `peer-agent run` tells a person and a script: plain reasons, one line per event,
/// `retrying` for a remote not up yet, mode mismatches on both sides, and a refused certificate
/// retried at the longest backoff.
@Suite("A quiet, plain terminal")
struct TerminalTests {
  private static func certificates(_ names: String) throws -> String {
    try TrustProcessTests.certificates(names)
  }

  private static func peer(_ name: String, _ mode: String, certs: String, _ extra: [String]) throws -> PeerProcess {
    try PeerProcess(["run", "--name", name, "--mode", mode, "--certs", certs, "--in-memory", "--output", "json", "--log-level", "debug"] + extra)
  }

  @Test(
    "The reason a link ended, in plain words: the remote shut down, closed the connection, or was lost",
    arguments: ["single", "dual"]
  )
  func reasons(mode: String) async throws {
    let certs = try Self.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let hubPort = try freePort()
    let edgePort = try freePort()
    let hubArguments = ["--listen", "127.0.0.1:\(hubPort)"] + (mode == "dual" ? ["--connect", "edge@127.0.0.1:\(edgePort)"] : [])
    let edgeArguments = ["--connect", "hub@127.0.0.1:\(hubPort)"] + (mode == "dual" ? ["--listen", "127.0.0.1:\(edgePort)"] : [])
    let reason: (PeerProcess, String) async -> String? = { process, remote in
      await process.event("disconnected", timeout: .seconds(15)) { ($0["peer"] as? String) == remote }?["reason"] as? String
    }

    // The hub shuts down (SIGTERM): the edge says so.
    var hub = try Self.peer("hub", mode, certs: certs, hubArguments)
    let edge = try Self.peer("edge", mode, certs: certs, edgeArguments)
    defer { edge.terminate() }
    #expect(await edge.event("connected") != nil, "\(edge.log)")
    #expect(await hub.event("connected") != nil, "\(hub.log)")
    hub.terminate()
    #expect(await hub.waitForExit() == 0)
    #expect(await reason(edge, "hub") == "hub shut down", "\(edge.events) \(edge.log.suffix(4000)) hub: \(hub.log.suffix(3000))")

    // The hub is killed: the edge lost it.
    hub = try Self.peer("hub", mode, certs: certs, hubArguments)
    defer { hub.terminate() }
    #expect(await hub.event("listening") != nil, "\(hub.log)")
    #expect(
      await edge.event("connected", timeout: .seconds(20)) { _ in edge.count(where: { $0["event"] == "connected" }) >= 2 } != nil,
      "edge: \(edge.lines.suffix(10)) \(edge.log.suffix(3000)) hub: \(hub.log.suffix(2000))"
    )
    try await Task.sleep(for: .milliseconds(300))
    hub.kill()
    let lost = await edge.event("disconnected", timeout: .seconds(15)) { _ in
      edge.count(where: { $0["event"] == "disconnected" }) >= 2
    }
    let lostReasons = edge.parsedEvents.filter { $0["event"] == "disconnected" }.map { $0["reason"] ?? "" }
    #expect(lost != nil && lostReasons.last?.hasPrefix("lost the connection to hub") == true, "\(lostReasons)")
    // Killed during a handshake or not, a vanished listener is no refusal.
    #expect(edge.count(where: { $0["event"] == "error" }) == 0, "\(edge.parsedEvents.filter { $0["event"] == "error" })")

    // The edge goes away: the hub says who closed what.
    let hub2 = try Self.peer("hub", mode, certs: certs, hubArguments)
    defer { hub2.terminate() }
    #expect(await hub2.event("connected", timeout: .seconds(20)) != nil, "\(hub2.log)")
    edge.terminate()
    let ended = await reason(hub2, "edge")
    #expect(ended == (mode == "dual" ? "edge shut down" : "edge closed the connection"), "\(hub2.events)")
    for text in edge.parsedEvents.compactMap({ $0["reason"] }) + hub2.parsedEvents.compactMap({ $0["reason"] }) {
      #expect(!text.contains("CancellationError") && !text.contains("RST_STREAM") && !text.contains("unavailable:"), "\(text)")
    }
  }

  @Test("Text mode prints one line per event, no log lines, and no 'connecting' noise")
  func oneLinePerEvent() async throws {
    let port = try freePort()
    let hub = try PeerProcess(["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:\(port)", "--insecure", "--in-memory"])
    defer { hub.terminate() }
    let edge = try PeerProcess(["run", "--name", "edge", "--mode", "single", "--connect", "127.0.0.1:\(port)", "--insecure", "--in-memory", "--exit-on-eof"])
    defer { edge.terminate() }
    edge.send(lines: ["one", "two"])
    edge.closeInput()
    #expect(await edge.waitForExit(timeout: .seconds(30)) == 0, "\(edge.log)")
    try await Task.sleep(for: .milliseconds(200))
    hub.terminate()
    _ = await hub.waitForExit()
    let out = edge.lines
    #expect(out.filter { $0.hasPrefix("-> ") }.count == 2, "\(out)")
    #expect(out.filter { $0.hasPrefix("connected to ") }.count == 1, "\(out)")
    #expect(!out.contains { $0.hasPrefix("link to") }, "ready/down/connecting repeat connected/disconnected: \(out)")
    for log in [edge.log, hub.log] {
      #expect(!log.contains(" info ") && !log.contains(" notice "), "logs at warning by default: \(log)")
    }
  }

  @Test("A remote that is not up yet is 'retrying', not 'error'; the JSON 'peer' is a name or absent")
  func retrying() async throws {
    let port = try freePort()
    let edge = try PeerProcess([
      "run", "--name", "edge", "--mode", "single", "--connect", "hub@127.0.0.1:\(port)", "--insecure", "--in-memory", "--output", "json",
    ])
    defer { edge.terminate() }
    let retrying = try #require(await edge.event("retrying"), "\(edge.events)")
    #expect(retrying["peer"] as? String == "hub")
    #expect(retrying["address"] as? String == "127.0.0.1:\(port)")
    #expect((retrying["reason"] as? String)?.contains("connection refused") == true)
    let plain = try PeerProcess(["run", "--name", "edge", "--mode", "single", "--connect", "127.0.0.1:\(port)", "--insecure", "--in-memory", "--output", "json"])
    defer { plain.terminate() }
    let unnamed = try #require(await plain.event("retrying"))
    #expect(unnamed["peer"] == nil && unnamed["address"] as? String == "127.0.0.1:\(port)", "\(unnamed)")
    #expect(edge.count(where: { $0["event"] == "error" }) == 0)
    // A line without a name, with no peer to go to, fails with no 'peer' at all.
    let listener = try PeerProcess(["run", "--name", "solo", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--in-memory", "--output", "json"])
    defer { listener.terminate() }
    #expect(await listener.event("listening") != nil)
    listener.send("hello")
    let failed = try #require(await listener.event("error"))
    #expect(failed["peer"] == nil, "\(failed)")
  }

  @Test("A mode mismatch is reported on both sides, with the fix")
  func modeMismatch() async throws {
    let certs = try Self.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let hub = try Self.peer("hub", "single", certs: certs, ["--listen", "127.0.0.1:0"])
    defer { hub.terminate() }
    let address = try #require(await hub.event("listening")?["address"] as? String)
    let edge = try Self.peer("edge", "dual", certs: certs, ["--listen", "127.0.0.1:0", "--connect", "hub@\(address)"])
    defer { edge.terminate() }
    for (process, remote) in [(hub, "edge"), (edge, "hub")] {
      let reported = try #require(await process.event("error") { $0["reason"] as? String == "modeMismatch" }, "\(process.events)")
      #expect(reported["peer"] as? String == remote)
      #expect((reported["message"] as? String)?.contains("Start both with the same --mode") == true)
    }
  }

  @Test("A certificate refused for good is said once, and retried only at the longest backoff")
  func refusedForGood() async throws {
    let certs = try Self.certificates("hub")
    let strangers = try Self.certificates("edge")
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: strangers)
    }
    let hub = try Self.peer("hub", "single", certs: certs, ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
    defer { hub.terminate() }
    let metrics = try #require(await hub.event("metrics")?["address"] as? String)
    let address = try #require(await hub.event("listening")?["address"] as? String)
    let edge = try Self.peer("edge", "single", certs: strangers, [
      "--connect", "hub@\(address)", "--backoff-initial", "0.05", "--backoff-max", "4",
    ])
    defer { edge.terminate() }
    let refused = try #require(await edge.event("error"), "\(edge.events)")
    #expect((refused["message"] as? String)?.contains("a redial cannot fix this, so retrying only every 4 s") == true, "\(refused)")
    try await Task.sleep(for: .seconds(6))
    let samples = try await MetricsTests.scrape(metrics, of: hub) { _ in true }
    let attempts = samples[#"peer_agent_refused_connections_total{reason="certificate_refused"}"#] ?? 0
    // Backing off from 50 ms would make 7 or more attempts in 6 s; at 2-4 s apart, 4 at most.
    #expect(attempts >= 1 && attempts <= 4, "\(samples)")
    #expect(edge.count(where: { $0["event"] == "error" }) == 1, "\(edge.events)")
  }

  @Test("Reasons from the transport read as plain words")
  func plainWords() {
    #expect(LinkEnding.describe("unavailable: \"Stream unexpectedly closed: received RST_STREAM frame (0x8: cancel).\"", remote: "hub")
      == "lost the connection to hub (it stopped, or the network failed)")
    #expect(LinkEnding.describe("getTask failed: CancellationError()", remote: "edge") == "edge closed the connection")
    #expect(LinkEnding.describe("the dialer closed getTask", remote: "edge") == "edge closed the connection")
    #expect(LinkEnding.describe("hub shut down", remote: "hub") == "hub shut down")
    #expect(LinkEnding.describe("shutdown", remote: "") == "this peer is shutting down")
    #expect(LinkEnding.describe("getTask failed: resourceExhausted: Message has exceeded the configured maximum payload size (max: 4194304, actual: 5242885)", remote: "hub").hasPrefix("hub sent a message larger than this peer accepts"))
    #expect(LinkEnding.describe("no message from the remote for 900 ms: the link stalled", remote: "hub").contains("stalled"))
  }
}
