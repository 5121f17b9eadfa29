public import CoreMetrics
public import Tracing

extension Peer.Config {
  /// Where the peer reports its metrics and spans.
  ///
  /// The peer records through swift-metrics and swift-distributed-tracing: give it any backend
  /// (``metricsFactory``, ``tracer``), or bootstrap `MetricsSystem` / `InstrumentationSystem`
  /// once for the process. With neither, nothing is recorded and nothing is paid for it.
  public struct Observability: Sendable {
    /// The swift-metrics backend; `nil` uses `MetricsSystem.factory`.
    public var metricsFactory: (any MetricsFactory)?
    /// The swift-distributed-tracing tracer (swift-otel's, say); `nil` uses
    /// `InstrumentationSystem.tracer`. With neither, no span is made.
    public var tracer: (any Tracer)?
    /// The most distinct remote names given their own `peer` label; the others share
    /// `peer="other"`, so that a hub with many peers keeps a bounded number of series.
    public var maximumPeerLabels: Int
    /// How often the gauges (links by state, outbox depth, certificate expiry) are sampled.
    public var sampleInterval: Duration

    /// Creates the observability settings.
    public init(
      metricsFactory: (any MetricsFactory)? = nil,
      tracer: (any Tracer)? = nil,
      maximumPeerLabels: Int = 64,
      sampleInterval: Duration = .seconds(1)
    ) {
      self.metricsFactory = metricsFactory
      self.tracer = tracer
      self.maximumPeerLabels = maximumPeerLabels
      self.sampleInterval = sampleInterval
    }

    /// `MetricsSystem`'s backend, 64 peer labels, gauges sampled every second.
    public static var defaults: Self { Self() }
  }
}
