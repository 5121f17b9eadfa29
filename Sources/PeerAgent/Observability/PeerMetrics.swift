internal import CoreMetrics
internal import Foundation
private import Synchronization

/// The peer's metrics, recorded through swift-metrics. Names and labels (the contract with
/// dashboards; see docs/operating.md):
///
/// | name | type | labels |
/// |---|---|---|
/// | `peer_agent_links` | gauge | `state` |
/// | `peer_agent_requests_sent_total` | counter | `peer`, `outcome` |
/// | `peer_agent_requests_handled_total` | counter | `peer`, `outcome` |
/// | `peer_agent_round_trip_seconds` | histogram | `peer` |
/// | `peer_agent_outbox_depth` | gauge | |
/// | `peer_agent_resends_total` | counter | `peer` |
/// | `peer_agent_repeats_total` | counter | `peer` |
/// | `peer_agent_refused_connections_total` | counter | `reason` |
/// | `peer_agent_certificate_expiry_seconds` | gauge | |
/// | `peer_agent_store_write_seconds` | histogram | |
/// | `peer_agent_cluster_leases` | gauge | | (hubs of a cluster)
/// | `peer_agent_cluster_claimed_total` | counter | | (hubs of a cluster)
/// | `peer_agent_cluster_forwarded_total` | counter | | (hubs of a cluster)
/// | `peer_agent_cluster_write_seconds` | histogram | | (hubs of a cluster)
/// | `peer_agent_cluster_database_up` | gauge | | (hubs of a cluster)
///
/// A name is always recorded with the same label names (Prometheus backends require it).
/// Handles are made once per label set and kept: a request costs a lock and a dictionary
/// lookup per metric.
final class PeerMetrics: Sendable {
  enum Name {
    static let links = "peer_agent_links"
    static let sent = "peer_agent_requests_sent_total"
    static let handled = "peer_agent_requests_handled_total"
    static let roundTrip = "peer_agent_round_trip_seconds"
    static let outboxDepth = "peer_agent_outbox_depth"
    static let resends = "peer_agent_resends_total"
    static let repeats = "peer_agent_repeats_total"
    static let refused = "peer_agent_refused_connections_total"
    static let certificateExpiry = "peer_agent_certificate_expiry_seconds"
    static let storeWrite = "peer_agent_store_write_seconds"
    static let clusterLeases = "peer_agent_cluster_leases"
    static let clusterClaimed = "peer_agent_cluster_claimed_total"
    static let clusterForwarded = "peer_agent_cluster_forwarded_total"
    static let clusterWrite = "peer_agent_cluster_write_seconds"
    static let clusterDatabaseUp = "peer_agent_cluster_database_up"
  }

  /// How a request this peer sent ended.
  enum SentOutcome: String, CaseIterable {
    /// The remote's handler answered.
    case replied
    /// The remote's handler failed, or the remote refused the request.
    case failed
    /// No reply before the deadline.
    case timedOut = "timed_out"
    /// No peer by that name connected before the deadline.
    case unknownPeer = "unknown_peer"
    /// The remote could not say whether it handled it (at-most-once after a crash).
    case outcomeUnknown = "outcome_unknown"
    /// The peer stopped first (a durable store keeps it for the next run).
    case shutdown
  }

  /// How a request this peer received ended.
  enum HandledOutcome: String, CaseIterable {
    /// The handler answered.
    case ok
    /// The handler threw: an error reply.
    case failed
    /// Its stream went away while the handler ran: the sender sends it again.
    case cancelled
    /// Refused without running the handler (at-most-once: accepted before a crash, or the
    /// acceptance could not be recorded).
    case refused
  }

  /// Why a connection or stream was refused; a small fixed set, so the label stays bounded.
  enum RefusalReason: String, CaseIterable {
    case noClientCertificate = "no_client_certificate"
    case certificateRefused = "certificate_refused"
    case notTLS = "not_tls"
    case tlsFailed = "tls_failed"
    case notAllowed = "not_allowed"
    case keyConflict = "key_conflict"
    case connectionLimit = "connection_limit"
    case handshakeTimeout = "handshake_timeout"
    case firstStreamTimeout = "first_stream_timeout"
    case other

    /// The reason a listener's refusal report names (``TLSRefusal``'s sentences).
    static func classify(_ reason: String) -> Self {
      if reason.contains("no client certificate") { return .noClientCertificate }
      if reason.contains("does not speak TLS") || reason.contains("did not send HTTP/2") { return .notTLS }
      if reason.contains("certificate was refused") || reason.contains("refused this listener's certificate") {
        return .certificateRefused
      }
      if reason.contains("TLS handshake failed") { return .tlsFailed }
      return .other
    }
  }

  private struct Key: Hashable {
    var name: String
    var first: String
    var second: String
  }

  private let factory: any MetricsFactory
  private let labels: PeerLabels
  private let counters = Mutex<[Key: CoreMetrics.Counter]>([:])
  private let timers = Mutex<[Key: CoreMetrics.Timer]>([:])
  private let gauges = Mutex<[Key: Gauge]>([:])
  private let linkGauges: [LinkState: Gauge]
  private let outboxDepth: Gauge
  private let certificateExpiry: Gauge
  private let storeWrite: CoreMetrics.Timer

  /// The metrics on `config`'s backend, or `nil` when there is none (nothing to record).
  static func make(_ config: Peer.Config.Observability) -> PeerMetrics? {
    let factory = config.metricsFactory ?? MetricsSystem.factory
    if factory is NOOPMetricsHandler { return nil }
    return PeerMetrics(factory: factory, maximumPeerLabels: config.maximumPeerLabels)
  }

  init(factory: any MetricsFactory, maximumPeerLabels: Int) {
    self.factory = factory
    self.labels = PeerLabels(maximum: maximumPeerLabels)
    var gauges: [LinkState: Gauge] = [:]
    for state in [LinkState.connecting, .ready, .degraded, .down] {
      gauges[state] = Gauge(label: Name.links, dimensions: [("state", state.rawValue)], factory: factory)
    }
    self.linkGauges = gauges
    self.outboxDepth = Gauge(label: Name.outboxDepth, dimensions: [], factory: factory)
    self.certificateExpiry = Gauge(label: Name.certificateExpiry, dimensions: [], factory: factory)
    self.storeWrite = CoreMetrics.Timer(label: Name.storeWrite, dimensions: [], factory: factory)
    for state in gauges.values { state.record(0) }
    self.outboxDepth.record(0)
    self.prime()
  }

  /// Makes every family exist from the first scrape, so that `rate(...)` and `absent(...)`
  /// work before anything happens: the series with fixed labels (refusal reasons, outcomes)
  /// at 0, and the `peer`-labelled families with their `peer="other"` series at 0.
  private func prime() {
    for reason in RefusalReason.allCases {
      _ = self.counter(Name.refused, ("reason", reason.rawValue))
    }
    let other = PeerLabels.overflow
    for outcome in SentOutcome.allCases {
      _ = self.counter(Name.sent, ("peer", other), ("outcome", outcome.rawValue))
    }
    for outcome in HandledOutcome.allCases {
      _ = self.counter(Name.handled, ("peer", other), ("outcome", outcome.rawValue))
    }
    _ = self.counter(Name.resends, ("peer", other))
    _ = self.counter(Name.repeats, ("peer", other))
    _ = self.timer(Name.roundTrip, ("peer", other))
  }

  // MARK: - Recording

  func sent(to peer: String, _ outcome: SentOutcome, roundTrip: Duration? = nil) {
    let label = self.labels.label(for: peer)
    self.counter(Name.sent, ("peer", label), ("outcome", outcome.rawValue)).increment()
    if let roundTrip {
      self.timer(Name.roundTrip, ("peer", label)).recordNanoseconds(Self.nanoseconds(roundTrip))
    }
  }

  func handled(from peer: String, _ outcome: HandledOutcome) {
    self.counter(Name.handled, ("peer", self.labels.label(for: peer)), ("outcome", outcome.rawValue)).increment()
  }

  func resent(to peer: String) {
    self.counter(Name.resends, ("peer", self.labels.label(for: peer))).increment()
  }

  func repeated(from peer: String) {
    self.counter(Name.repeats, ("peer", self.labels.label(for: peer))).increment()
  }

  func refused(_ reason: RefusalReason) {
    self.counter(Name.refused, ("reason", reason.rawValue)).increment()
  }

  func storeWrite(_ duration: Duration) {
    self.storeWrite.recordNanoseconds(Self.nanoseconds(duration))
  }

  // MARK: - A hub of a cluster (ClusterActivity)

  /// The cluster's families, at 0, on a hub of one.
  func primeCluster() {
    self.clusterLeases(0)
    _ = self.counter(Name.clusterClaimed)
    _ = self.counter(Name.clusterForwarded)
    _ = self.timer(Name.clusterWrite)
  }

  func clusterLeases(_ count: Int) {
    Self.handle(in: self.gauges, Name.clusterLeases, []) {
      Gauge(label: Name.clusterLeases, dimensions: [], factory: self.factory)
    }.record(count)
  }

  func clusterDatabaseUp(_ up: Bool) {
    Self.handle(in: self.gauges, Name.clusterDatabaseUp, []) {
      Gauge(label: Name.clusterDatabaseUp, dimensions: [], factory: self.factory)
    }.record(up ? 1 : 0)
  }

  func clusterClaimed(_ count: Int) {
    self.counter(Name.clusterClaimed).increment(by: count)
  }

  func clusterForwarded(_ count: Int) {
    self.counter(Name.clusterForwarded).increment(by: count)
  }

  func clusterWrite(_ duration: Duration) {
    self.timer(Name.clusterWrite).recordNanoseconds(Self.nanoseconds(duration))
  }

  /// Sets the gauges: links by state, the outbox depth, the seconds until the own certificate
  /// expires (negative once it has).
  func sample(states: [String: LinkState], outboxDepth: Int, certificateExpires: Date?) {
    var counts: [LinkState: Int] = [:]
    for state in states.values { counts[state, default: 0] += 1 }
    for (state, gauge) in self.linkGauges { gauge.record(counts[state] ?? 0) }
    self.outboxDepth.record(outboxDepth)
    if let certificateExpires {
      self.certificateExpiry.record(certificateExpires.timeIntervalSinceNow.rounded())
    }
  }

  // MARK: - Handles

  private func counter(_ name: String, _ dimensions: (String, String)...) -> CoreMetrics.Counter {
    Self.handle(in: self.counters, name, dimensions) {
      CoreMetrics.Counter(label: name, dimensions: dimensions, factory: self.factory)
    }
  }

  private func timer(_ name: String, _ dimensions: (String, String)...) -> CoreMetrics.Timer {
    Self.handle(in: self.timers, name, dimensions) {
      CoreMetrics.Timer(label: name, dimensions: dimensions, factory: self.factory)
    }
  }

  /// The handle for `name` with `dimensions` (at most two), made once.
  private static func handle<Handle>(
    in cache: borrowing Mutex<[Key: Handle]>,
    _ name: String,
    _ dimensions: [(String, String)],
    make: () -> Handle
  ) -> Handle {
    let key = Key(name: name, first: dimensions.first?.1 ?? "", second: dimensions.dropFirst().first?.1 ?? "")
    return cache.withLock { cache in
      if let handle = cache[key] { return handle }
      let handle = make()
      cache[key] = handle
      return handle
    }
  }

  private static func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue &+ attoseconds / 1_000_000_000
  }
}

/// The `peer` label of a remote name: its own for the first ``maximum`` names seen, `other`
/// for the rest.
final class PeerLabels: Sendable {
  static let overflow = "other"
  let maximum: Int
  private let seen = Mutex<Set<String>>([])

  init(maximum: Int) {
    self.maximum = max(0, maximum)
  }

  func label(for name: String) -> String {
    self.seen.withLock { seen in
      if seen.contains(name) { return name }
      guard seen.count < self.maximum else { return Self.overflow }
      seen.insert(name)
      return name
    }
  }
}
