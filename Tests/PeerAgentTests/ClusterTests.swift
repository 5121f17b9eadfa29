import Foundation
import PeerAgentTestSupport
import Synchronization
import Testing

@testable import peer_agent

/// Whether the cluster suite runs: PostgreSQL's binaries are here, or CI requires the suite
/// (`PEER_AGENT_REQUIRE_POSTGRES=1`), and then fails without them.
let clusterTestsCanRun =
  TestPostgres.isAvailable || ProcessInfo.processInfo.environment["PEER_AGENT_REQUIRE_POSTGRES"] == "1"

/// Hubs that share one PostgreSQL (`peer-agent run --cluster`), through real processes over
/// mutual TLS, on a PostgreSQL server each test starts for itself: a send from one hub to an
/// agent on another, `kill -9` of a hub under load, a rolling restart of every hub.
///
/// Without PostgreSQL's server binaries the suite is skipped and says why; with
/// `PEER_AGENT_REQUIRE_POSTGRES=1` (CI) it runs and fails instead.
@Suite(
  "Cluster: hubs on one PostgreSQL, agents that fail over",
  .serialized,
  .enabled(if: clusterTestsCanRun, "PostgreSQL server binaries not found (Debian: apt-get install postgresql; or set PEER_AGENT_PG_BIN): the cluster tests did not run")
)
struct ClusterTests {

  /// Hubs, agents and the database of one test.
  final class Cluster: Sendable {
    let postgres: TestPostgres
    let root: String
    let certs: String
    let hubNames: [String]
    let hubPorts: [Int]
    let hubs: LockedList<PeerProcess>
    let agents = LockedList<PeerProcess>()

    init(hubs: Int, agents: Int) throws {
      self.postgres = try TestPostgres()
      self.root = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-cluster-\(UUID().uuidString)").path
      self.certs = "\(self.root)/certs"
      self.hubNames = (1 ... hubs).map { "hub-\($0)" }
      self.hubPorts = try (1 ... hubs).map { _ in try freePort() }
      self.hubs = LockedList()
      let names = self.hubNames + (1 ... agents).map { "agent-\($0)" }
      let made = try PeerProcess.runToCompletion(["certs", "--out", self.certs, "--names", names.joined(separator: ",")])
      guard made.status == 0 else { throw TestPostgres.Failure(message: "certs: \(made.error)") }
    }

    func hubArguments(_ index: Int, handling: String = "at-most-once") -> [String] {
      [
        "run", "--name", self.hubNames[index], "--mode", "single", "--listen", "127.0.0.1:\(self.hubPorts[index])",
        "--certs", self.certs, "--cluster", self.postgres.url, "--output", "json", "--log-level", "warning",
        "--handling", handling, "--request-timeout", "120", "--lease-duration", "3", "--shutdown-grace", "5",
        "--metrics", "127.0.0.1:0",
      ]
    }

    /// Starts hub `index` and waits until it listens.
    @discardableResult
    func startHub(_ index: Int) async throws -> PeerProcess {
      let hub = try PeerProcess(self.hubArguments(index))
      self.hubs.set(index, hub)
      guard await hub.event("listening", timeout: .seconds(60)) != nil else {
        throw TestPostgres.Failure(message: "\(self.hubNames[index]) did not start: \(hub.log)")
      }
      return hub
    }

    /// The failover list an agent dials, starting at hub `first`.
    func connectList(first: Int) -> String {
      let order = (0 ..< self.hubNames.count).map { (first + $0) % self.hubNames.count }
      return order.map { "\(self.hubNames[$0])@127.0.0.1:\(self.hubPorts[$0])" }.joined(separator: ",")
    }

    /// The name agents know the cluster by: the hubs' names in their list's order.
    func groupName(first: Int) -> String {
      let order = (0 ..< self.hubNames.count).map { (first + $0) % self.hubNames.count }
      return order.map { self.hubNames[$0] }.joined(separator: ",")
    }

    func startAgent(_ number: Int, first: Int) throws -> PeerProcess {
      try PeerProcess([
        "run", "--name", "agent-\(number)", "--mode", "single", "--connect", self.connectList(first: first),
        "--certs", self.certs, "--in-memory", "--output", "json", "--log-level", "warning",
        "--request-timeout", "120", "--backoff-initial", "0.05", "--backoff-max", "0.5",
      ])
    }

    /// Starts agents 1 to `count`, agent N dialing the hubs from hub (N - 1) mod hubs on, and
    /// waits until each is connected.
    func startAgents(_ count: Int) async throws -> [PeerProcess] {
      var started: [PeerProcess] = []
      for number in 1 ... count {
        let agent = try self.startAgent(number, first: (number - 1) % self.hubNames.count)
        self.agents.set(number, agent)
        started.append(agent)
      }
      for (index, agent) in started.enumerated() {
        #expect(await agent.event("connected", timeout: .seconds(60)) != nil, "agent-\(index + 1): \(agent.log)")
      }
      return started
    }

    /// The agents the registry says are connected to `hub`.
    func leases(of hub: String) throws -> Set<String> {
      let out = try self.postgres.psql("SELECT agent FROM peer_agent_leases WHERE hub = '\(hub)' AND expires_at > now()")
      return Set(out.split(separator: "\n").map(String.init))
    }

    func tearDown() {
      for agent in self.agents.all { agent.terminate() }
      for hub in self.hubs.all { hub.kill() }
      self.postgres.stop()
      try? FileManager.default.removeItem(atPath: self.root)
    }
  }

  /// Polls `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
  static func eventually(within limit: Duration = .seconds(60), _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now.advanced(by: limit)
    while ContinuousClock.now < deadline {
      if try condition() { return true }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
  }

  /// Request ids handled more than once across `processes` (`request` events by sender and id).
  static func handledTwice(_ processes: [PeerProcess]) -> [String] {
    var seen: [String: Int] = [:]
    for process in processes {
      for event in process.parsedEvents where event["event"] == "request" {
        seen["\(event["peer"] ?? "")/\(event["id"] ?? "")", default: 0] += 1
      }
    }
    return seen.filter { $0.value > 1 }.map(\.key).sorted()
  }

  @Test("Two hubs, 20 agents: every hub reaches every agent, wherever it is connected, and the replies come back")
  func crossHub() async throws {
    let cluster = try await offThePool { try Cluster(hubs: 2, agents: 20) }
    defer { cluster.tearDown() }
    let hub1 = try await cluster.startHub(0)
    let hub2 = try await cluster.startHub(1)
    let agents = try await cluster.startAgents(20)
    let registered = try await Self.eventually {
      try cluster.leases(of: "hub-1").count == 10 && cluster.leases(of: "hub-2").count == 10
    }
    let leases1 = try cluster.leases(of: "hub-1")
    let leases2 = try cluster.leases(of: "hub-2")
    #expect(registered, "leases: hub-1 \(leases1.sorted()), hub-2 \(leases2.sorted())")
    #expect(try cluster.leases(of: "hub-1") == Set(stride(from: 1, through: 20, by: 2).map { "agent-\($0)" }))

    // The cluster's families are there before anything crossed the database.
    let firstScrape = try await MetricsTests.scrape(try #require(await hub1.event("metrics")?["address"] as? String)) { _ in true }
    for family in ["peer_agent_cluster_claimed_total", "peer_agent_cluster_forwarded_total", "peer_agent_cluster_write_seconds_count"] {
      #expect(firstScrape[family] != nil, "\(family) absent: \(firstScrape.keys.filter { $0.contains("cluster") })")
    }

    // Each hub sends to all 20: half of them are on the other hub.
    let start = ContinuousClock.now
    hub1.send(lines: (1 ... 20).map { "@agent-\($0) from hub-1 to agent-\($0)" })
    hub2.send(lines: (1 ... 20).map { "@agent-\($0) from hub-2 to agent-\($0)" })
    for hub in [hub1, hub2] {
      let answered = await Self.eventually { hub.count { $0["event"] == "reply" } >= 20 }
      #expect(answered, "replies: \(hub.parsedEvents.filter { $0["event"] != "queued" }.prefix(10)) log: \(hub.log.suffix(2000))")
    }
    print("cluster: 40 sends, 20 of them across hubs, all answered in \(ContinuousClock.now - start)")
    for hub in [("hub-1", hub1), ("hub-2", hub2)] {
      let replies = hub.1.parsedEvents.filter { $0["event"] == "reply" }
      for number in 1 ... 20 {
        let reply = replies.first { $0["peer"] == "agent-\(number)" }
        #expect(reply?["reply"] == "ack from agent-\(number): from \(hub.0) to agent-\(number)", "\(hub.0) -> agent-\(number): \(String(describing: reply))")
      }
      #expect(!hub.1.parsedEvents.contains { $0["event"] == "error" }, "\(hub.0): \(hub.1.parsedEvents.filter { $0["event"] == "error" })")
    }
    for (index, agent) in agents.enumerated() {
      let requests = agent.parsedEvents.filter { $0["event"] == "request" }
      #expect(requests.count == 2, "agent-\(index + 1) handled \(requests.count)")
      // The cluster is one remote to an agent: the name of its list.
      #expect(requests.allSatisfy { $0["peer"] == cluster.groupName(first: index % 2) }, "\(requests)")
    }

    // The hubs show what they did through the database, in /metrics and /status: 10 leases
    // each, the other hub's 10 requests claimed, their own 10 delivered by the other hub.
    for hub in [hub1, hub2] {
      let metrics = try #require(await hub.event("metrics")?["address"] as? String, "\(hub.log)")
      let samples = try await MetricsTests.scrape(metrics, of: hub) {
        $0["peer_agent_cluster_leases"] == 10 && ($0["peer_agent_cluster_forwarded_total"] ?? 0) >= 10
      }
      #expect(samples["peer_agent_cluster_leases"] == 10, "\(samples.filter { $0.key.contains("cluster") })")
      #expect(samples["peer_agent_cluster_claimed_total"] == 10, "\(samples.filter { $0.key.contains("cluster") })")
      #expect(samples["peer_agent_cluster_forwarded_total"] == 10, "\(samples.filter { $0.key.contains("cluster") })")
      #expect((samples["peer_agent_cluster_write_seconds_count"] ?? 0) > 0, "\(samples.filter { $0.key.contains("cluster") })")
      let status = try await MetricsTests.get(metrics, "/status").body
      let json = try #require(try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])
      let shown = try #require(json["cluster"] as? [String: Any], "\(status)")
      #expect(shown["leases"] as? Int == 10 && shown["claimed"] as? Int == 10 && shown["forwarded"] as? Int == 10, "\(status)")
      #expect((shown["writes"] as? Int ?? 0) > 0 && shown["write_ms_mean"] is Double, "\(status)")
      #expect((shown["database"] as? String)?.hasPrefix("postgresql://postgres@127.0.0.1:") == true, "\(status)")
      let printed = try await PeerProcess.runToCompletion(["status", "--metrics", metrics])
      #expect(printed.output.contains("10 leases, 10 claimed from other hubs, 10 delivered by other hubs"), "\(printed.output)")
    }

    // And the other way: each agent's request is handled by the hub it is on.
    for agent in agents { agent.send("status from agent") }
    for (index, agent) in agents.enumerated() {
      let replied = await Self.eventually { agent.count { $0["event"] == "reply" } >= 1 }
      #expect(replied, "agent-\(index + 1): \(agent.parsedEvents.suffix(5))")
      let hub = index % 2 == 0 ? "hub-1" : "hub-2"
      #expect(agent.parsedEvents.first { $0["event"] == "reply" }?["reply"] == "ack from \(hub): status from agent")
    }
    #expect(Self.handledTwice([hub1, hub2]).isEmpty)
  }

  @Test("One name, one key across hubs: a second key for a connected agent is refused by every hub, and gets none of their requests")
  func oneKeyAcrossHubs() async throws {
    let cluster = try await offThePool { try Cluster(hubs: 2, agents: 1) }
    defer { cluster.tearDown() }
    let hub1 = try await cluster.startHub(0)
    let hub2 = try await cluster.startHub(1)
    // The real agent-1, on hub-1.
    let real = try await cluster.startAgents(1)[0]
    #expect(try await Self.eventually { try cluster.leases(of: "hub-1") == ["agent-1"] })
    // A second certificate for agent-1: same CA, another key, dialing hub-2 only.
    let other = "\(cluster.root)/impostor"
    try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    for file in ["ca.pem", "ca-key.pem"] {
      try FileManager.default.copyItem(atPath: "\(cluster.certs)/\(file)", toPath: "\(other)/\(file)")
    }
    #expect(try await PeerProcess.runToCompletion(["certs", "--out", other, "--names", "agent-1"]).status == 0)
    let impostor = try PeerProcess([
      "run", "--name", "agent-1", "--mode", "single", "--connect", "hub-2@127.0.0.1:\(cluster.hubPorts[1])",
      "--certs", other, "--in-memory", "--output", "json", "--log-level", "warning",
      "--backoff-initial", "0.2", "--backoff-max", "1",
    ])
    defer { impostor.terminate() }
    let refused = await hub2.event("error", timeout: .seconds(30)) {
      ($0["message"] as? String)?.contains("is connected to the cluster with key") == true
    }
    #expect(refused != nil, "hub-2: \(hub2.log.suffix(2000))")
    #expect(hub2.log.contains("connected.key=sha256:") && hub2.log.contains("presented.key=sha256:"), "both fingerprints: \(hub2.log.suffix(2000))")
    #expect(try cluster.leases(of: "hub-2").isEmpty, "the lease moved to the impostor's hub")

    hub1.send("@agent-1 secret-from-hub-1")
    hub2.send("@agent-1 secret-from-hub-2")
    for hub in [hub1, hub2] {
      #expect(await hub.event("reply", timeout: .seconds(30)) != nil, "\(hub.log.suffix(2000))")
    }
    #expect(real.count { $0["event"] == "request" } == 2, "\(real.parsedEvents)")
    #expect(impostor.count { $0["event"] == "request" } == 0, "the impostor received: \(impostor.parsedEvents)")
    #expect(hub2.count { $0["event"] == "connected" && $0["peer"] == "agent-1" } == 0, "hub-2 linked the impostor: \(hub2.parsedEvents)")
    #expect(await impostor.event("error") { ($0["message"] as? String)?.contains("the listener refused this peer") == true } != nil, "\(impostor.log)")
  }

  @Test("The database goes away under a running hub: said once, a line typed fails at once saying why, /status and the metric show it; when it is back, said once, and requests flow")
  func databaseGoesAway() async throws {
    let cluster = try await offThePool { try Cluster(hubs: 1, agents: 1) }
    defer { cluster.tearDown() }
    let hub = try await cluster.startHub(0)
    _ = try await cluster.startAgents(1)
    let joined = await hub.event("cluster", timeout: .seconds(30)) { $0["state"] as? String == "joined" }
    #expect((joined?["hubs"] as? [Any])?.compactMap { $0 as? String } == ["hub-1"], "\(String(describing: joined)) \(hub.log)")
    #expect((joined?["database"] as? String)?.hasPrefix("postgresql://postgres@127.0.0.1:") == true)
    let metrics = try #require(await hub.event("metrics")?["address"] as? String)

    try cluster.postgres.pause()
    let down = await hub.event("cluster", timeout: .seconds(30)) { $0["state"] as? String == "unreachable" }
    #expect(down != nil, "no unreachable event: \(hub.log.suffix(2000))")
    // A line typed now fails at once, and says why (it hung until the database came back).
    let typed = ContinuousClock.now
    hub.send("@agent-1 while the database is away")
    let failed = await hub.event("error", timeout: .seconds(30))
    let message = failed?["message"] as? String ?? ""
    #expect(message.contains("the cluster database is unreachable"), "\(String(describing: failed))")
    print("cluster: a line typed with the database away failed after \(ContinuousClock.now - typed): \(message)")
    let status = try await MetricsTests.get(metrics, "/status").body
    #expect(status.contains("\"database_reachable\":false"), "\(status)")
    let samples = try await MetricsTests.scrape(metrics, of: hub) { $0["peer_agent_cluster_database_up"] == 0 }
    #expect(samples["peer_agent_cluster_database_up"] == 0)
    // Said once, however long it lasts and however many queries fail meanwhile.
    try await Task.sleep(for: .seconds(3))
    #expect(hub.count { $0["event"] == "cluster" && $0["state"] == "unreachable" } == 1, "\(hub.parsedEvents.filter { $0["event"] == "cluster" })")
    #expect(!hub.log.contains("PSQLError") && !hub.log.contains("SingleConnectionFailure"), "\(hub.log.suffix(3000))")

    try cluster.postgres.resume()
    let up = await hub.event("cluster", timeout: .seconds(60)) { $0["state"] as? String == "reachable" }
    #expect(up != nil, "no reachable event: \(hub.log.suffix(2000))")
    hub.send("@agent-1 after")
    let replied = await hub.event("reply", timeout: .seconds(30)) { $0["text"] as? String == "after" }
    #expect(replied != nil, "\(hub.parsedEvents.suffix(5))")
    #expect(try await MetricsTests.scrape(metrics, of: hub) { $0["peer_agent_cluster_database_up"] == 1 }["peer_agent_cluster_database_up"] == 1)
  }

  @Test("kill -9 of a hub under load: its agents fail over, every request is answered, none handled twice")
  func killHubUnderLoad() async throws {
    let cluster = try await offThePool { try Cluster(hubs: 2, agents: 20) }
    defer { cluster.tearDown() }
    let hub1 = try await cluster.startHub(0)
    let hub2 = try await cluster.startHub(1)
    let agents = try await cluster.startAgents(20)
    #expect(try await Self.eventually { try cluster.leases(of: "hub-1").count == 10 })

    let perAgent = 600
    for (index, agent) in agents.enumerated() {
      agent.send(lines: (0 ..< perAgent).map { "agent-\(index + 1) #\($0)" })
    }
    // hub-2 sends to every agent too: to those on hub-1 across the hubs, until they move.
    hub2.send(lines: (1 ... 20).flatMap { number in (0 ..< 20).map { "@agent-\(number) hub-2 #\($0)" } })
    // Under way: hub-1's agents have replies to some of their requests, not all.
    let hub1Agents = agents.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
    let underWay = await Self.eventually {
      hub1Agents.reduce(0) { sum, agent in sum + agent.count { $0["event"] == "reply" } } >= 1000
    }
    #expect(underWay, "hub-1: \(hub1.log.suffix(1000))")
    // hub-1's own requests, for agents on hub-2: recorded in the database when it dies.
    hub1.send(lines: (1 ... 10).flatMap { pair in (0 ..< 5).map { "@agent-\(pair * 2) from hub-1 #\($0)" } })
    let recorded = await Self.eventually { hub1.count { $0["event"] == "queued" && ($0["text"] ?? "").contains("from hub-1") } >= 50 }
    #expect(recorded)
    let hub1Requests = Set(hub1.parsedEvents.filter { $0["event"] == "queued" && ($0["text"] ?? "").contains("from hub-1") }.compactMap { $0["id"] })
    let killed = ContinuousClock.now
    hub1.kill()
    let handledByHub1 = hub1.count { $0["event"] == "request" }

    // The agents of hub-1 reconnect to hub-2.
    let movedAll = await Self.eventually {
      hub1Agents.allSatisfy { agent in agent.count { $0["event"] == "connected" } >= 2 }
    }
    let failover = ContinuousClock.now - killed
    #expect(movedAll, "agents not back: \(hub1Agents.filter { $0.count { $0["event"] == "connected" } < 2 }.map(\.log))")
    print("cluster: kill -9 of hub-1 after it handled \(handledByHub1) of its agents' \(10 * perAgent) requests; its 10 agents connected to hub-2 within \(failover)")
    // Their events name the list (one remote) and the hub reached: hub-1, then hub-2.
    for agent in hub1Agents {
      let links = agent.parsedEvents.filter { $0["event"] == "connected" || $0["event"] == "disconnected" }
      #expect(links.allSatisfy { $0["peer"] == "hub-1,hub-2" }, "\(links)")
      #expect(links.first?["hub"] == "hub-1" && links.last?["hub"] == "hub-2", "\(links)")
    }
    // And so do the replies: which hub answered.
    let replyHubs = Set(agents.flatMap { $0.parsedEvents.filter { $0["event"] == "reply" }.map { $0["hub"] ?? "none" } })
    #expect(replyHubs == ["hub-1", "hub-2"], "\(replyHubs)")

    for (index, agent) in agents.enumerated() {
      let done = await Self.eventually(within: .seconds(120)) {
        agent.count { $0["event"] == "reply" || ($0["event"] == "error" && $0["id"] != nil) } >= perAgent
      }
      #expect(done, "agent-\(index + 1): \(agent.count { $0["event"] == "reply" }) replies; \(agent.parsedEvents.filter { $0["event"] == "error" }.prefix(3))")
    }
    let answered = await Self.eventually(within: .seconds(120)) { hub2.count { $0["event"] == "reply" } >= 400 }
    #expect(answered, "hub-2: \(hub2.count { $0["event"] == "reply" }) of 400 replies; \(hub2.parsedEvents.filter { $0["event"] == "error" }.prefix(3))")
    var unknown = 0
    for (index, agent) in agents.enumerated() {
      // With at-most-once handling, a request hub-1 had accepted when it died is answered
      // "outcomeUnknown" by hub-2 instead of being handled again; nothing else fails, and
      // nothing of the agents that were on hub-2 all along.
      let errors = agent.parsedEvents.filter { $0["event"] == "error" }
      unknown += errors.count
      #expect(errors.allSatisfy { $0["reason"] == "outcomeUnknown" }, "\(errors.prefix(3))")
      // An agent of hub-2 whose link never moved owes nothing to hub-1's death. (Under load a
      // link can stall past the heartbeat timeout: the agent then fails over to hub-1, and
      // what hub-1 accepted from it is answered outcomeUnknown like its own agents'.)
      let links = agent.parsedEvents.filter { $0["event"] == "connected" || $0["event"] == "disconnected" }
      if index % 2 == 1, links.count == 1 {
        #expect(errors.isEmpty, "agent-\(index + 1) stayed on hub-2: \(errors.count) errors, e.g. \(errors.prefix(1)); log: \(agent.log.suffix(1500))")
      }
      #expect(Set(agent.parsedEvents.filter { $0["event"] == "reply" }.compactMap { $0["id"] }).count == agent.count { $0["event"] == "reply" })
    }
    print("cluster: after the kill, \(unknown) of \(20 * perAgent) agent requests answered outcomeUnknown (accepted by hub-1 as it died)")
    #expect(Self.handledTwice([hub1, hub2]) == [], "handled twice across the hubs")
    #expect(Self.handledTwice(agents) == [], "an agent handled a request twice")
    #expect(try cluster.leases(of: "hub-1").isEmpty, "hub-1's leases lapsed or moved")

    // hub-1 again, with the same name: its requests were delivered by hub-2 meanwhile, or
    // are delivered now; it reports every reply.
    let restarted = try await cluster.startHub(0)
    let replied = await Self.eventually(within: .seconds(60)) {
      hub1Requests.isSubset(of: Set((hub1.parsedEvents + restarted.parsedEvents).filter { $0["event"] == "reply" }.compactMap { $0["id"] }))
    }
    let hub1Answered = Set((hub1.parsedEvents + restarted.parsedEvents).filter { $0["event"] == "reply" }.compactMap { $0["id"] })
    #expect(replied, "hub-1's requests without a reply: \(hub1Requests.subtracting(hub1Answered).count) of \(hub1Requests.count); \(restarted.log.suffix(1500))")
    print("cluster: hub-1's \(hub1Requests.count) requests recorded before the kill: \(hub1Requests.intersection(Set(restarted.parsedEvents.filter { $0["event"] == "resumed" }.compactMap { $0["id"] })).count) resumed after its restart, all answered")
  }

  @Test("A rolling restart of three hubs under load: agents move with jitter, nothing is lost or handled twice")
  func rollingRestart() async throws {
    let cluster = try await offThePool { try Cluster(hubs: 3, agents: 20) }
    defer { cluster.tearDown() }
    for index in 0 ..< 3 { try await cluster.startHub(index) }
    let agents = try await cluster.startAgents(20)
    var sent = 0
    var previous: [PeerProcess] = []
    for index in 0 ..< 3 {
      for (number, agent) in agents.enumerated() {
        agent.send(lines: (0 ..< 50).map { "agent-\(number + 1) round \(index) #\($0)" })
      }
      sent += 50
      let hub = cluster.hubs.get(index)!
      hub.stop()  // SIGTERM: drain
      #expect(await hub.waitForExit(timeout: .seconds(30)) != nil, "\(cluster.hubNames[index]) did not stop: \(hub.log.suffix(2000))")
      previous.append(hub)
      try await cluster.startHub(index)
    }
    for (number, agent) in agents.enumerated() {
      let done = await Self.eventually(within: .seconds(120)) {
        agent.count { $0["event"] == "reply" || ($0["event"] == "error" && $0["id"] != nil) } >= sent
      }
      #expect(done, "agent-\(number + 1): \(agent.count { $0["event"] == "reply" }) of \(sent); \(agent.parsedEvents.filter { $0["event"] == "error" }.prefix(3))")
      let errors = agent.parsedEvents.filter { $0["event"] == "error" }
      #expect(errors.isEmpty, "a drained hub finishes what it accepted: \(errors.prefix(3))")
    }
    #expect(Self.handledTwice(previous + cluster.hubs.all) == [], "handled twice across the hubs")
  }
}

/// A list of processes by index, shared between a test and its cluster.
final class LockedList<Element: Sendable>: Sendable {
  private let items = Mutex<[Int: Element]>([:])
  func set(_ index: Int, _ value: Element) { self.items.withLock { $0[index] = value } }
  func get(_ index: Int) -> Element? { self.items.withLock { $0[index] } }
  var all: [Element] { self.items.withLock { $0.sorted { $0.key < $1.key }.map(\.value) } }
}
