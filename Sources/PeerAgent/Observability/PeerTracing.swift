internal import Instrumentation
internal import Tracing

/// The peer's spans, through swift-distributed-tracing: a `send` span (kind client) for every
/// request this peer sends, from acceptance to its outcome, and a `handle` span (kind server)
/// around every handler call. The `send` span's context travels inside the request
/// (`trace_context` in `Protos/contact.proto`), so the receiver's `handle` span joins the
/// sender's trace in either direction — down `getTask` too, where no per-request metadata
/// exists — and a handler that sends on continues it.
struct PeerTracing: Sendable {
  let tracer: any Tracer

  /// The tracer `config` names (else `InstrumentationSystem`'s), or `nil` when it records
  /// nothing.
  static func make(_ config: Peer.Config.Observability) -> PeerTracing? {
    let tracer = config.tracer ?? InstrumentationSystem.tracer
    if tracer is NoOpTracer { return nil }
    return PeerTracing(tracer: tracer)
  }

  /// Starts the `send` span of request `id` to `peer`, as a child of the caller's span, if
  /// any; returns it with the context to carry in the request.
  func startSend(id: String, to peer: String) -> OutgoingTrace {
    let span = self.tracer.startAnySpan("send", context: InstrumentationContext.current ?? .topLevel, ofKind: .client)
    span.attributes["peer_agent.peer"] = peer
    span.attributes["peer_agent.request.id"] = id
    var carrier: [String: String] = [:]
    self.tracer.inject(span.context, into: &carrier, using: DictionaryCarrier())
    return OutgoingTrace(span: span, context: carrier)
  }

  /// Runs `body` (the handler) in a `handle` span that continues the sender's trace; the span
  /// ends in error when `failure` finds one in the result.
  func handle<T: Sendable>(
    _ request: IncomingRequest,
    failure: (T) -> String? = { _ in nil },
    _ body: () async throws -> T
  ) async rethrows -> T {
    var context = InstrumentationContext.topLevel
    self.tracer.extract(request.traceContext, into: &context, using: DictionaryCarrier())
    let span = self.tracer.startAnySpan("handle", context: context, ofKind: .server)
    span.attributes["peer_agent.peer"] = request.from.name
    span.attributes["peer_agent.request.id"] = request.id
    span.attributes["peer_agent.link"] = request.link.rawValue
    defer { span.end() }
    do {
      let result = try await InstrumentationContext.$current.withValue(span.context) { try await body() }
      if let failed = failure(result) {
        span.setStatus(SpanStatus(code: .error, message: failed))
      }
      return result
    } catch {
      span.recordError(error)
      span.setStatus(SpanStatus(code: .error, message: "\(error)"))
      throw error
    }
  }
}

/// A `send` span and the context that goes in its request.
struct OutgoingTrace: Sendable {
  let span: any Span
  let context: [String: String]

  /// Ends the span with the request's outcome: `nil` for a reply, else what failed.
  func end(failure: String? = nil) {
    if let failure {
      self.span.attributes["peer_agent.outcome"] = failure
      self.span.setStatus(SpanStatus(code: .error, message: failure))
    } else {
      self.span.attributes["peer_agent.outcome"] = "replied"
      self.span.setStatus(SpanStatus(code: .ok))
    }
    self.span.end()
  }
}

/// Trace context in a request's `trace_context` map.
struct DictionaryCarrier: Injector, Extractor {
  func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
    carrier[key] = value
  }

  func extract(key: String, from carrier: [String: String]) -> String? {
    carrier[key]
  }
}
