import Foundation
import PeerAgentTestSupport
import Testing

@testable import peer_agent

/// `peer-agent run` never loops on a line and never drops one: an oversize line fails at once,
/// a plain line typed on a dialer before its listener is up is queued durably for it, and a
/// plain line on a listener with nobody connected is refused at once.
@Suite("peer-agent run: every line accepted or refused at once", .serialized)
struct CommandLineInputTests {
  private static func certificates() throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-input-\(UUID().uuidString)").path
    let made = try PeerProcess.runToCompletion(["certs", "--out", directory, "--names", "hub,edge"])
    #expect(made.status == 0, "\(made.error)")
    return directory
  }

  private static func temporaryDirectory() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-state-\(UUID().uuidString)").path
  }

  @Test("A line above --max-message-bytes: an error event at once, never queued, never resent, the link stays up", arguments: ["single", "dual"])
  func oversizeLine(mode: String) async throws {
    let certs = try Self.certificates()
    let state = Self.temporaryDirectory()
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: state)
    }
    let (hubPort, edgePort) = (try freePort(), try freePort())
    let common = ["--mode", mode, "--certs", certs, "--output", "json", "--heartbeat", "0.2", "--heartbeat-timeout", "1"]
    let hub = try PeerProcess(
      ["run", "--name", "hub", "--listen", "127.0.0.1:\(hubPort)", "--in-memory"]
        + (mode == "dual" ? ["--connect", "edge@127.0.0.1:\(edgePort)"] : []) + common
    )
    defer { hub.terminate() }
    let edgeArguments =
      ["run", "--name", "edge", "--connect", "hub@127.0.0.1:\(hubPort)", "--state-dir", state]
      + (mode == "dual" ? ["--listen", "127.0.0.1:\(edgePort)"] : []) + common
    let edge = try PeerProcess(edgeArguments)
    defer { edge.terminate() }
    #expect(await edge.event("connected", where: { $0["peer"] as? String == "hub" }) != nil, "\(edge.log)")

    let huge = "@hub " + String(repeating: "x", count: 5_000_000)
    let sentAt = ContinuousClock.now
    edge.send(huge)
    edge.send("@hub after")
    // The error about the line (not one about a link: in dual mode, the hub may dial the
    // edge before it listens).
    let error = try #require(await edge.event("error", where: { $0["text"] != nil }), "\(edge.events)")
    #expect(ContinuousClock.now - sentAt < .seconds(5))
    #expect(error["reason"] as? String == "messageTooLarge")
    #expect((error["text"] as? String)?.count == 80)
    #expect((error["message"] as? String)?.contains("4194304") == true, "\(error)")
    let after = try #require(await edge.event("reply", where: { $0["text"] as? String == "after" }), "\(edge.log)")
    #expect(after["reply"] as? String == "ack from hub: after")
    // Never queued, never reached the hub, and the link never went down.
    #expect(!edge.events.contains { $0["event"] as? String == "queued" && ($0["text"] as? String ?? "").hasPrefix("xxx") })
    #expect(!hub.events.contains { ($0["text"] as? String ?? "").hasPrefix("xxx") })
    #expect(!edge.events.contains { $0["event"] as? String == "disconnected" })

    // The next run on the same state has nothing to resend.
    edge.terminate()
    _ = await edge.waitForExit()
    let again = try PeerProcess(edgeArguments)
    defer { again.terminate() }
    #expect(await again.event("connected", where: { $0["peer"] as? String == "hub" }) != nil, "\(again.log)")
    #expect(!again.events.contains { $0["event"] as? String == "resumed" })
  }

  @Test("A plain line on a dialer before its listener is reachable is queued on disk and delivered when it connects")
  func plainLineBeforeConnecting() async throws {
    let certs = try Self.certificates()
    let state = Self.temporaryDirectory()
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: state)
    }
    let hubPort = try freePort()
    let edgeArguments = [
      "run", "--name", "edge", "--mode", "single", "--connect", "hub@127.0.0.1:\(hubPort)", "--certs", certs,
      "--output", "json", "--state-dir", state, "--backoff-initial", "0.05", "--backoff-max", "0.2",
    ]
    let edge = try PeerProcess(edgeArguments)
    edge.send("early bird")
    let queued = try #require(await edge.event("queued"), "\(edge.log)")
    #expect(queued["peer"] as? String == "hub")
    #expect(queued["text"] as? String == "early bird")
    // It is on disk: the process dies before the hub ever starts, and the next run resends it.
    edge.kill()
    let again = try PeerProcess(edgeArguments)
    defer { again.terminate() }
    let resumed = try #require(await again.event("resumed"), "\(again.log)")
    #expect(resumed["text"] as? String == "early bird")
    let hub = try PeerProcess([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:\(hubPort)", "--certs", certs,
      "--output", "json", "--in-memory",
    ])
    defer { hub.terminate() }
    let reply = try #require(await again.event("reply"), "\(again.log)")
    #expect(reply["text"] as? String == "early bird")
    #expect(reply["reply"] as? String == "ack from hub: early bird")
    #expect(hub.events.filter { $0["event"] as? String == "request" }.count == 1)
  }

  @Test("A plain line on a listener with no peer connected: an error event at once that says how to queue by name")
  func plainLineOnLonelyListener() async throws {
    let hub = try PeerProcess([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--output", "json",
      "--in-memory",
    ])
    defer { hub.terminate() }
    #expect(await hub.event("listening") != nil, "\(hub.log)")
    let sentAt = ContinuousClock.now
    hub.send("anyone there?")
    let error = try #require(await hub.event("error", where: { $0["text"] != nil }), "\(hub.events)")
    #expect(ContinuousClock.now - sentAt < .seconds(5))
    #expect(error["reason"] as? String == "notConnected")
    #expect(error["text"] as? String == "anyone there?")
    #expect((error["message"] as? String)?.contains("@NAME text") == true)
    #expect(!hub.events.contains { $0["event"] as? String == "queued" })
    // By name, it is queued for that peer.
    hub.send("@edge later")
    let queued = try #require(await hub.event("queued"), "\(hub.log)")
    #expect(queued["peer"] as? String == "edge")
  }
}
