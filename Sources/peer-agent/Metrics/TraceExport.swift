private import Foundation
internal import Logging
internal import OTel
internal import ServiceLifecycle
internal import Tracing
internal import PeerAgent

/// `peer-agent run --otlp-endpoint URL`: spans to an OpenTelemetry collector over OTLP/gRPC,
/// with swift-otel. Off without the flag.
enum TraceExport {
  /// Checks `endpoint` (`http://HOST:PORT`, or `https://` for TLS to the collector).
  static func validate(_ endpoint: String) -> String? {
    guard let url = URL(string: endpoint), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
      return "--otlp-endpoint must be a URL such as http://127.0.0.1:4317 (got '\(endpoint)')"
    }
    return nil
  }

  /// The tracer to give the peer and the service that exports its spans (run it alongside the
  /// peer; it sends what is left when it stops).
  static func make(endpoint: String, peerName: String, logger: Logger) throws -> (tracer: any Tracer, service: any Service) {
    var configuration = OTel.Configuration.default
    configuration.serviceName = "peer-agent"
    configuration.resourceAttributes = ["service.instance.id": peerName, "service.version": PeerAgentVersion.current]
    configuration.logs.enabled = false
    configuration.metrics.enabled = false
    configuration.traces.exporter = .otlp
    configuration.traces.otlpExporter.protocol = .grpc
    configuration.traces.otlpExporter.endpoint = endpoint
    // Spans go out within a second: a short-lived `--exit-on-eof` run still exports them.
    configuration.traces.batchSpanProcessor.scheduleDelay = .seconds(1)
    configuration.diagnosticLogger = .custom(logger)
    let backend = try OTel.makeTracingBackend(configuration: configuration)
    return (backend.factory, backend.service)
  }

  /// Log metadata with the current span's `trace_id` and `span_id`.
  static var metadataProvider: Logger.MetadataProvider { OTel.makeLoggingMetadataProvider() }

  /// The trace id in a W3C `traceparent` (`00-TRACEID-SPANID-FLAGS`), if the context has one.
  static func traceID(in context: [String: String]) -> String? {
    guard let parent = context["traceparent"] else { return nil }
    let parts = parent.split(separator: "-")
    guard parts.count == 4, parts[1].count == 32 else { return nil }
    return String(parts[1])
  }
}
