import CoreMetrics
import Foundation
import PeerAgentTestSupport
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Testing

@testable import PeerAgent
@testable import peer_agent

/// `peer-agent run --metrics`: Prometheus text at /metrics and the peer's links at /status,
/// scraped from real processes exchanging requests over mutual TLS; and `peer-agent status`.
@Suite("Metrics and status")
struct MetricsTests {
  private let common = ["--mode", "single", "--output", "json", "--in-memory", "--metrics", "127.0.0.1:0"]

  /// `name{labels} value` lines of Prometheus text, by `name{labels}`.
  static func samples(_ text: String) -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
      guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
      samples[String(line[..<space])] = value
    }
    return samples
  }

  static func get(_ address: String, _ path: String) async throws -> (status: UInt, body: String) {
    let parsed = try PeerAddress(parsing: address)
    let answer = try await HTTPGet.fetch(host: parsed.host, port: parsed.port, path: path, timeout: .seconds(5))
    return (answer.status, String(decoding: answer.body, as: UTF8.self))
  }

  /// Scrapes `/metrics` of `process` until `done` holds for its samples (the gauges are
  /// sampled every second), or 10 s.
  static func scrape(
    _ address: String,
    of process: PeerProcess? = nil,
    until done: ([String: Double]) -> Bool
  ) async throws -> [String: Double] {
    let deadline = ContinuousClock.now.advanced(by: .seconds(10))
    var samples: [String: Double] = [:]
    repeat {
      let body: String
      do {
        body = try await Self.get(address, "/metrics").body
      } catch {
        Issue.record("cannot scrape \(address): \(error); running: \(process?.isRunning ?? true); log: \(process?.log.suffix(4000) ?? "")")
        throw error
      }
      samples = Self.samples(body)
      if done(samples) { return samples }
      try await Task.sleep(for: .milliseconds(100))
    } while ContinuousClock.now < deadline
    return samples
  }

  @Test("Two peers exchange requests: /metrics counts them, /status lists the links, `peer-agent status` prints them")
  func twoPeers() async throws {
    let certs = try TrustProcessTests.certificates("hub,edge")
    defer { try? FileManager.default.removeItem(atPath: certs) }
    let hub = try PeerProcess(["run", "--name", "hub", "--listen", "127.0.0.1:0", "--certs", certs] + self.common)
    defer { hub.terminate() }
    let hubMetrics = try #require(await hub.event("metrics")?["address"] as? String, "\(hub.log)")
    let address = try #require(await hub.event("listening")?["address"] as? String, "\(hub.log)")
    let edge = try PeerProcess(["run", "--name", "edge", "--connect", "hub@\(address)", "--certs", certs] + self.common)
    defer { edge.terminate() }
    let edgeMetrics = try #require(await edge.event("metrics")?["address"] as? String, "\(edge.log)")
    #expect(await edge.event("connected") != nil, "\(edge.log)")

    edge.send(lines: (1 ... 5).map { "from edge \($0)" })
    hub.send(lines: (1 ... 3).map { "@edge from hub \($0)" })
    for _ in 0 ..< 200 where edge.count(where: { $0["event"] == "reply" }) < 5 || hub.count(where: { $0["event"] == "reply" }) < 3 {
      try await Task.sleep(for: .milliseconds(50))
    }

    // A reply is printed before its request is settled on disk, and the outbox's depth falls
    // when it is: wait for both.
    let onEdge = try await Self.scrape(edgeMetrics, of: edge) {
      $0[#"peer_agent_links{state="ready"}"#] == 1 && $0["peer_agent_outbox_depth"] == 0
    }
    #expect(onEdge[#"peer_agent_requests_sent_total{peer="hub",outcome="replied"}"#] == 5)
    #expect(onEdge[#"peer_agent_requests_handled_total{peer="hub",outcome="ok"}"#] == 3)
    #expect(onEdge[#"peer_agent_round_trip_seconds_count{peer="hub"}"#] == 5)
    #expect(onEdge[#"peer_agent_links{state="ready"}"#] == 1)
    #expect(onEdge[#"peer_agent_links{state="connecting"}"#] == 0, "the dialer's placeholder is gone once the hub's name is known")
    #expect(onEdge["peer_agent_outbox_depth"] == 0)

    let onHub = try await Self.scrape(hubMetrics, of: hub) { $0[#"peer_agent_links{state="ready"}"#] == 1 }
    #expect(onHub[#"peer_agent_requests_handled_total{peer="edge",outcome="ok"}"#] == 5)
    #expect(onHub[#"peer_agent_requests_sent_total{peer="edge",outcome="replied"}"#] == 3)
    #expect((onHub[#"peer_agent_round_trip_seconds_sum{peer="edge"}"#] ?? 0) > 0)
    // `peer-agent certs` makes certificates valid for a year.
    let expiry = try #require(onHub["peer_agent_certificate_expiry_seconds"])
    #expect(expiry > 300 * 86_400 && expiry < 367 * 86_400)
    #expect((onHub["peer_agent_store_write_seconds_count"] ?? 0) >= 3)
    let text = try await Self.get(hubMetrics, "/metrics").body
    #expect(text.contains("# HELP peer_agent_round_trip_seconds "))
    #expect(text.contains("# TYPE peer_agent_round_trip_seconds histogram"))

    let (code, json) = try await Self.get(hubMetrics, "/status")
    #expect(code == 200)
    let status = try StatusView.decode(Array(json.utf8))
    #expect(status.peer == "hub" && status.mode == "single" && status.version == PeerAgentVersion.current)
    #expect(status.listening == address)
    #expect(status.links == [PeerStatus.Link(peer: "edge", state: "ready", kind: "getTask", unanswered: 0)])
    #expect(status.outboxDepth == 0)
    let raw = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    #expect(Set(raw.keys).isSuperset(of: ["peer", "mode", "links", "outbox_depth", "version"]))
    for link in try #require(raw["links"] as? [[String: Any]]) {
      #expect(Set(link.keys) == ["peer", "state", "kind", "unanswered"], "\(link)")
    }
    // A dialer's status before its first link: every key, `kind` and `listening` null.
    let early = String(decoding: StatusView.json(PeerStatus(peer: "edge", mode: "dual", links: [
      PeerStatus.Link(peer: "hub", state: "connecting", kind: nil, unanswered: 2)
    ], outboxDepth: 2)), as: UTF8.self)
    #expect(early.contains(#""kind":null"#) && early.contains(#""listening":null"#), "\(early)")
    #expect(try StatusView.decode(Array(early.utf8)).links.first?.kind == nil)

    let table = try await PeerProcess.runToCompletion(["status", "--metrics", edgeMetrics])
    #expect(table.status == 0, "\(table.error)")
    #expect(table.output.contains("edge: single-channel, peer-agent \(PeerAgentVersion.current)"), "\(table.output)")
    #expect(table.output.contains("hub   ready  sendStatus  0"), "\(table.output)")
  }

  @Test("Refused connections are counted by reason")
  func refusals() async throws {
    let certs = try TrustProcessTests.certificates("hub")
    let strangers = try TrustProcessTests.certificates("edge")
    defer {
      try? FileManager.default.removeItem(atPath: certs)
      try? FileManager.default.removeItem(atPath: strangers)
    }
    let hub = try PeerProcess(["run", "--name", "hub", "--listen", "127.0.0.1:0", "--certs", certs] + self.common)
    defer { hub.terminate() }
    let metrics = try #require(await hub.event("metrics")?["address"] as? String, "\(hub.log)")
    let address = try #require(await hub.event("listening")?["address"] as? String, "\(hub.log)")
    // A peer from another CA, and one that speaks no TLS at all.
    let stranger = try PeerProcess(["run", "--name", "edge", "--connect", address, "--certs", strangers] + self.common)
    defer { stranger.terminate() }
    let plaintext = try PeerProcess(["run", "--name", "plain", "--connect", address, "--insecure"] + self.common)
    defer { plaintext.terminate() }
    let samples = try await Self.scrape(metrics, of: hub) {
      ($0[#"peer_agent_refused_connections_total{reason="certificate_refused"}"#] ?? 0) >= 1
        && ($0[#"peer_agent_refused_connections_total{reason="not_tls"}"#] ?? 0) >= 1
    }
    #expect((samples[#"peer_agent_refused_connections_total{reason="certificate_refused"}"#] ?? 0) >= 1, "\(samples)")
    #expect((samples[#"peer_agent_refused_connections_total{reason="not_tls"}"#] ?? 0) >= 1, "\(samples)")
  }

  @Test("The endpoint answers only what it serves: 404, 405, HEAD; `peer-agent status` says when nothing is there")
  func endpoint() async throws {
    let routes = MetricsEndpoint.Routes(metrics: { Array("m 1\n".utf8) }, status: { Array("{}".utf8) })
    #expect(routes.respond(method: .GET, uri: "/metrics?x=1").status == .ok)
    #expect(routes.respond(method: .GET, uri: "/nope").status == .notFound)
    #expect(routes.respond(method: .POST, uri: "/metrics").status == .methodNotAllowed)
    #expect(routes.respond(method: .HEAD, uri: "/status").status == .ok)

    let channel = try await MetricsEndpoint(address: PeerAddress(host: "127.0.0.1", port: 0), routes: routes).bind()
    defer { channel.close(promise: nil) }
    let address = MetricsEndpoint.format(try #require(channel.localAddress))
    #expect(try await Self.get(address, "/metrics").body == "m 1\n")
    #expect(try await Self.get(address, "/healthz").status == 200)
    #expect(try await Self.get(address, "/other").status == 404)
    // Many clients at once: each gets its answer or a closed connection, and the endpoint
    // still serves afterwards.
    try await withThrowingTaskGroup(of: Void.self) { group in
      for _ in 0 ..< 100 { group.addTask { _ = try? await Self.get(address, "/metrics") } }
      try await group.waitForAll()
    }
    // A client of the burst that gave up may still be closing on the endpoint's side: served
    // again within seconds, not at once.
    var after: UInt = 0
    for _ in 0 ..< 50 where after != 200 {
      after = (try? await Self.get(address, "/metrics").status) ?? 0
      if after != 200 { try await Task.sleep(for: .milliseconds(100)) }
    }
    #expect(after == 200)

    let port = try freePort()
    let missing = try await PeerProcess.runToCompletion(["status", "--metrics", "127.0.0.1:\(port)", "--timeout", "2"])
    #expect(missing.status == 1)
    #expect(missing.error.contains("connection refused") && missing.error.contains("peer-agent run --metrics"), "\(missing.error)")
    let bad = try await PeerProcess.runToCompletion(["run", "--name", "x", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--metrics", "nowhere"])
    #expect(bad.status != 0 && bad.error.contains("--metrics"), "\(bad.error)")
  }

  @Test("Slow clients cannot keep /healthz down: 64 held connections from 8 addresses, a probe from a ninth is answered; one address holds at most 8; a trickle does not extend the request time")
  func slowClients() async throws {
    let routes = MetricsEndpoint.Routes(metrics: { Array("m 1\n".utf8) }, status: { Array("{}".utf8) })
    let channel = try await MetricsEndpoint(address: PeerAddress(host: "127.0.0.1", port: 0), routes: routes).bind()
    defer { channel.close(promise: nil) }
    let port = try #require(channel.localAddress?.port)
    let group = MultiThreadedEventLoopGroup.singleton
    /// A connection from `source` that sends the start of a request and never finishes it.
    func hold(from source: String) async throws -> any Channel {
      let client = try await ClientBootstrap(group: group)
        .bind(to: try SocketAddress(ipAddress: source, port: 0))
        .connect(host: "127.0.0.1", port: port)
        .get()
      // The endpoint may have closed it already (a refused one): the write is best effort.
      try? await client.writeAndFlush(client.allocator.buffer(string: "GET /metr")).get()
      return client
    }
    var held: [any Channel] = []
    defer { for client in held { client.close(promise: nil) } }
    for address in 2 ... 9 {
      for _ in 0 ..< 8 { held.append(try await hold(from: "127.0.0.\(address)")) }
    }
    // A ninth from one address is closed by the endpoint at once — sometimes before the
    // client's connect has finished, which then fails with ioOnClosedChannel: closed all the same.
    let closed: Bool
    do {
      closed = try await Self.closes(try await hold(from: "127.0.0.2"), within: .seconds(10))
    } catch ChannelError.ioOnClosedChannel {
      closed = true
    }
    #expect(closed, "a ninth connection from one address was kept")
    // The probe, from another address: the oldest waiting connection gives way.
    let probe: (status: UInt, body: [UInt8])
    do {
      probe = try await HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/healthz", timeout: .seconds(5))
    } catch {
      Issue.record("the probe from a ninth address was not answered: \(error)")
      throw error
    }
    #expect(probe.status == 200)

    // One byte every 200 ms: the request's time is counted from its first byte, not reset.
    let trickle = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
    let request = Array("GET /metrics HTTP/1.1\r\nhost: x\r\nx-padding: \(String(repeating: "a", count: 200))\r\n\r\n".utf8)
    var sent = 0
    while sent < request.count, trickle.isActive {
      trickle.writeAndFlush(trickle.allocator.buffer(bytes: [request[sent]]), promise: nil)
      sent += 1
      try await Task.sleep(for: .milliseconds(200))
    }
    #expect(sent < request.count, "a request trickled over \(request.count / 5) s was served to its end")
    trickle.close(promise: nil)
  }

  /// Whether `channel` is closed by its remote within `limit`.
  static func closes(_ channel: any Channel, within limit: Duration) async throws -> Bool {
    let deadline = ContinuousClock.now.advanced(by: limit)
    while channel.isActive, ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(20))
    }
    return !channel.isActive
  }

  @Test("A hub with many peers keeps a bounded number of series: names past the cap share peer=\"other\"")
  func boundedLabels() throws {
    let registry = PrometheusCollectorRegistry()
    let metrics = PeerMetrics(factory: PrometheusMetricsFactory(registry: registry), maximumPeerLabels: 3)
    for index in 0 ..< 50 {
      metrics.sent(to: "edge-\(index)", .replied, roundTrip: .milliseconds(1))
      metrics.handled(from: "edge-\(index)", .ok)
    }
    let samples = Self.samples(registry.emitToString())
    let series = samples.keys.filter { $0.hasPrefix("peer_agent_requests_sent_total{") && $0.contains(#"outcome="replied""#) }
    #expect(series.count == 4, "\(series.sorted())")
    #expect(samples[#"peer_agent_requests_sent_total{peer="other",outcome="replied"}"#] == 47)
    #expect(samples[#"peer_agent_requests_handled_total{peer="edge-0",outcome="ok"}"#] == 1)
    #expect(samples[#"peer_agent_round_trip_seconds_count{peer="other"}"#] == 47)
  }

  @Test("Every family is there from the first scrape, with fixed-label series at 0")
  func familiesFromTheStart() throws {
    let registry = PrometheusCollectorRegistry()
    _ = PeerMetrics(factory: PrometheusMetricsFactory(registry: registry), maximumPeerLabels: 3)
    let text = registry.emitToString()
    for family in [
      "peer_agent_requests_sent_total", "peer_agent_requests_handled_total", "peer_agent_round_trip_seconds",
      "peer_agent_resends_total", "peer_agent_repeats_total", "peer_agent_refused_connections_total",
      "peer_agent_links", "peer_agent_outbox_depth",
    ] {
      #expect(text.contains("# TYPE \(family)"), "\(family) is missing:\n\(text)")
    }
    let samples = Self.samples(text)
    for reason in PeerMetrics.RefusalReason.allCases {
      #expect(samples["peer_agent_refused_connections_total{reason=\"\(reason.rawValue)\"}"] == 0, "\(reason)")
    }
    #expect(samples[#"peer_agent_requests_sent_total{peer="other",outcome="replied"}"#] == 0)
  }

  @Test("Refusal reasons: each of the listener's sentences has its label")
  func refusalReasons() {
    for observed in ["the dialer sent no client certificate (mutual TLS is required)"] {
      #expect(PeerMetrics.RefusalReason.classify(observed) == .noClientCertificate)
    }
    #expect(PeerMetrics.RefusalReason.classify("the dialer does not speak TLS (a plaintext client, e.g. one run with --insecure)") == .notTLS)
    #expect(PeerMetrics.RefusalReason.classify("the dialer's certificate was refused: expired") == .certificateRefused)
    #expect(PeerMetrics.RefusalReason.classify("TLS handshake failed: x") == .tlsFailed)
    #expect(PeerMetrics.RefusalReason.classify("something new") == .other)
  }
}
