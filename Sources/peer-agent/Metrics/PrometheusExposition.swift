internal import CoreMetrics
internal import Prometheus

/// The Prometheus backend of `peer-agent run --metrics`: the registry the peer records into,
/// with histogram buckets that fit each metric, and `# HELP` lines in what it serves.
struct PrometheusExposition: Sendable {
  let registry = PrometheusCollectorRegistry()

  /// The swift-metrics factory to hand the peer.
  var factory: any MetricsFactory {
    var factory = PrometheusMetricsFactory(registry: self.registry)
    // Loopback round trips are a fraction of a millisecond; WAN ones up to seconds.
    factory.durationHistogramBuckets["peer_agent_round_trip_seconds"] = [
      .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
      .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
      .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]
    // A SQLite write is tens of microseconds; a slow disk, milliseconds.
    factory.durationHistogramBuckets["peer_agent_store_write_seconds"] = [
      .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
      .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
      .milliseconds(25), .milliseconds(100), .seconds(1),
    ]
    return factory
  }

  /// What each metric means, for `# HELP`.
  static let help: [String: String] = [
    "peer_agent_links": "Remote peers by the state of their link (connecting, ready, degraded, down).",
    "peer_agent_requests_sent_total": "Requests this peer sent, by remote and how they ended.",
    "peer_agent_requests_handled_total": "Requests this peer received and handled, by sender and outcome.",
    "peer_agent_round_trip_seconds": "From accepting a request to its reply, by remote.",
    "peer_agent_outbox_depth": "Requests this peer sent that have no reply yet.",
    "peer_agent_resends_total": "Requests written again after a reconnect or a restart, by remote.",
    "peer_agent_repeats_total": "Repeated requests answered from the de-duplication window, by sender.",
    "peer_agent_refused_connections_total": "Connections and streams this peer refused, by reason.",
    "peer_agent_certificate_expiry_seconds": "Seconds until this peer's certificate expires (negative once it has).",
    "peer_agent_store_write_seconds": "Time of one write to the delivery store (SQLite or memory).",
  ]

  /// The registry's text, with a `# HELP` line before each known metric's `# TYPE`.
  func render() -> [UInt8] {
    let text = self.registry.emitToString()
    var out = ""
    out.reserveCapacity(text.utf8.count + 2048)
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("# TYPE ") {
        let name = line.dropFirst("# TYPE ".count).split(separator: " ").first.map(String.init) ?? ""
        if let help = Self.help[name] { out += "# HELP \(name) \(help)\n" }
      }
      out += line
      out += "\n"
    }
    if out.hasSuffix("\n\n") { out.removeLast() }
    return Array(out.utf8)
  }
}
