import Foundation
import PeerAgentTestSupport
import Testing

@testable import peer_agent

/// Two `peer-agent run` processes, as a user starts them, talking through their standard
/// input and output.
@Suite("peer-agent processes", .serialized)
struct ProcessTests {
  private func makeCertificates() throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-test-\(UUID().uuidString)").path
    let result = try PeerProcess.runToCompletion(["certs", "--out", directory, "--names", "hub,edge"])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.error.contains("for development only"))
    for file in ["ca.pem", "ca-key.pem", "hub.pem", "hub-key.pem", "edge.pem", "edge-key.pem"] {
      #expect(result.output.contains("\(directory)/\(file)"))
    }
    for key in ["ca-key.pem", "hub-key.pem", "edge-key.pem"] {
      let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory)/\(key)")
      #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600, "\(key)")
    }
    return directory
  }

  @Test("A typo'd --name is refused before anything is created, naming the peers the folder holds; adding a peer to a folder suggests --names for the new one only")
  func typoedName() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-typo-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let made = try await PeerProcess.runToCompletion(["certs", "--out", "\(directory)/certs", "--names", "hub,edge"])
    #expect(made.status == 0, "\(made.error)")
    let state = "\(directory)/state"
    let run = try await PeerProcess.runToCompletion([
      "run", "--name", "hbu", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "\(directory)/certs", "--state-dir", state,
    ])
    #expect(run.status != 0)
    #expect(run.error.contains("no certificate for 'hbu'") && run.error.contains("it holds edge, hub"), "\(run.error)")
    #expect(!FileManager.default.fileExists(atPath: state), "a state folder was created for a name that does not exist")

    let again = try await PeerProcess.runToCompletion(["certs", "--out", "\(directory)/certs", "--names", "hub,edge,edge2"])
    #expect(again.status != 0)
    #expect(again.error.contains("--names edge2") && again.error.contains("never overwritten"), "\(again.error)")
    #expect(!FileManager.default.fileExists(atPath: "\(directory)/certs/edge2.pem"), "nothing is written when it refuses")
  }

  @Test("Two processes exchange messages both ways", arguments: ["single", "dual"])
  func exchange(mode: String) async throws {
    let certs = try self.makeCertificates()
    defer { try? FileManager.default.removeItem(atPath: certs) }

    let hubArguments: [String]
    let edgeArguments: [String]
    let common = ["--mode", mode, "--certs", certs, "--output", "json", "--in-memory"]
    if mode == "single" {
      hubArguments = ["run", "--name", "hub", "--listen", "127.0.0.1:0"] + common
      edgeArguments = []
    } else {
      let (hubPort, edgePort) = (try freePort(), try freePort())
      hubArguments = ["run", "--name", "hub", "--listen", "127.0.0.1:\(hubPort)", "--connect", "edge@127.0.0.1:\(edgePort)"] + common
      edgeArguments = ["run", "--name", "edge", "--listen", "127.0.0.1:\(edgePort)", "--connect", "hub@127.0.0.1:\(hubPort)", "--exit-on-eof"] + common
    }

    let hub = try PeerProcess(hubArguments)
    defer { hub.terminate() }
    let listening = try #require(await hub.event("listening"), "hub log: \(hub.log)")
    #expect(listening["peer"] as? String == "hub")
    let address = try #require(listening["address"] as? String)

    let edge = try PeerProcess(
      mode == "single"
        ? ["run", "--name", "edge", "--connect", "hub@\(address)", "--exit-on-eof"] + common
        : edgeArguments
    )
    defer { edge.terminate() }

    #expect(await edge.event("connected", where: { $0["peer"] as? String == "hub" }) != nil, "edge log: \(edge.log)")
    #expect(await hub.event("connected", where: { $0["peer"] as? String == "edge" }) != nil, "hub log: \(hub.log)")

    edge.send("hello from edge")
    hub.send("hello from hub")

    let reply = try #require(await edge.event("reply"), "edge log: \(edge.log)")
    #expect(reply["peer"] as? String == "hub")
    #expect(reply["text"] as? String == "hello from edge")
    #expect(reply["reply"] as? String == "ack from hub: hello from edge")
    #expect((reply["rtt_ms"] as? Double ?? -1) >= 0)
    #expect((reply["id"] as? String)?.isEmpty == false)

    let request = try #require(await hub.event("request"), "hub log: \(hub.log)")
    #expect(request["peer"] as? String == "edge")
    #expect(request["text"] as? String == "hello from edge")
    #expect(request["id"] as? String == reply["id"] as? String)

    let hubReply = try #require(await hub.event("reply"), "hub log: \(hub.log)")
    #expect(hubReply["peer"] as? String == "edge")
    #expect(hubReply["reply"] as? String == "ack from edge: hello from hub")
    let edgeRequest = try #require(await edge.event("request"))
    #expect(edgeRequest["peer"] as? String == "hub")
    #expect(edgeRequest["text"] as? String == "hello from hub")

    // With several lines at once, every one gets its reply.
    for n in 1 ... 20 { edge.send("line \(n)") }
    edge.closeInput()
    #expect(await edge.waitForExit() == 0, "edge log: \(edge.log)")
    #expect(edge.events.filter { $0["event"] as? String == "reply" }.count == 21)
    #expect(hub.events.filter { $0["event"] as? String == "request" }.count == 21)

    // SIGTERM: the hub shuts down gracefully and exits 0.
    hub.terminate()
    #expect(await hub.waitForExit() == 0, "hub log: \(hub.log)")
  }

  @Test("Bad flags and files: one line on standard error, non-zero exit")
  func badInput() throws {
    let cases: [([String], String)] = [
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "/nonexistent"], "file not found: /nonexistent/ca.pem"),
      (["run", "--name", "hub", "--mode", "single"], "needs --listen"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:x", "--insecure"], "is not a port number"),
      (["frobnicate"], "frobnicate"),
    ]
    for (arguments, message) in cases {
      let result = try PeerProcess.runToCompletion(arguments)
      #expect(result.status != 0)
      #expect(result.error.contains(message), "\(arguments): \(result.error)")
      #expect(!result.error.contains("Stack dump"), "\(result.error)")
    }
  }

  @Test("--insecure warns, and a plaintext link is named by its address")
  func insecure() async throws {
    let hub = try PeerProcess(["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--output", "json"])
    defer { hub.terminate() }
    let address = try #require(await hub.event("listening")?["address"] as? String)
    let edge = try PeerProcess(["run", "--name", "edge", "--mode", "single", "--connect", address, "--insecure", "--output", "json", "--exit-on-eof"])
    defer { edge.terminate() }
    edge.send("plain")
    edge.closeInput()
    #expect(await edge.waitForExit() == 0, "\(edge.log)")
    #expect(edge.log.contains("WARNING: --insecure"))
    let connected = try #require(await edge.event("connected"))
    #expect(connected["peer"] as? String == address)
    #expect(connected["verified"] as? Bool == false)
    let request = try #require(await hub.event("request"))
    #expect((request["peer"] as? String)?.hasPrefix("127.0.0.1:") == true)
  }

  @Test("A peer whose standard output is no longer read goes on serving (EPIPE, not a crash)")
  func standardOutputGone() async throws {
    let port = try freePort()
    let hub = Process()
    hub.executableURL = try PeerProcess.executable
    hub.arguments = ["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:\(port)", "--insecure", "--output", "json"]
    let output = Pipe()
    hub.standardOutput = output
    hub.standardError = FileHandle.nullDevice
    hub.standardInput = Pipe()
    try hub.run()
    defer { if hub.isRunning { hub.terminate() } }
    // Nobody reads the hub's events from now on: its writes fail with EPIPE.
    try output.fileHandleForReading.close()
    let edge = try PeerProcess([
      "run", "--name", "edge", "--mode", "single", "--connect", "127.0.0.1:\(port)", "--insecure", "--output", "json",
      "--exit-on-eof",
    ])
    defer { edge.terminate() }
    for n in 0 ..< 20 { edge.send("after the reader left \(n)") }
    edge.closeInput()
    #expect(await edge.waitForExit(timeout: .seconds(30)) == 0, "every request answered: \(edge.log)")
    #expect(hub.isRunning, "the hub is still up")
  }

  @Test("A line for a peer that is not connected says at once who is, and still waits for its deadline")
  func waitingForAbsentPeer() async throws {
    let hub = try PeerProcess([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--in-memory", "--output", "json",
      "--request-timeout", "2",
    ])
    defer { hub.terminate() }
    let address = try #require(await hub.event("listening")?["address"] as? String)
    let edge = try PeerProcess(["run", "--name", "edge", "--mode", "single", "--connect", address, "--insecure", "--in-memory", "--output", "json"])
    defer { edge.terminate() }
    let connected = try #require(await hub.event("connected")?["peer"] as? String)
    hub.send(lines: ["@ghost are you there?", "@ghost still?", "@ghost hello?"])
    let waiting = try #require(await hub.event("waiting", timeout: .seconds(5)))
    #expect(waiting["peer"] as? String == "ghost")
    #expect(waiting["connected"] as? [String] == [connected], "\(waiting)")
    #expect((waiting["message"] as? String)?.contains("'ghost' is not connected") == true)
    let failed = try #require(await hub.event("error", timeout: .seconds(10)) { $0["peer"] as? String == "ghost" })
    #expect(hub.count { $0["event"] == "waiting" } == 1, "three lines in a burst: one notice")
    // At its deadline the request fails: nobody of that name came.
    #expect(["unknownPeer", "timedOut"].contains(failed["reason"] as? String ?? ""), "\(failed)")
    // A line for a connected peer gets no such notice.
    hub.send("@\(connected) hello")
    #expect(await hub.event("reply", timeout: .seconds(10)) != nil)
    #expect(hub.count { $0["event"] == "waiting" } == 1)
  }
}
