import Foundation
import InMemoryTracing
import Instrumentation
import Testing
import Tracing

@testable import PeerAgent

/// Spans through swift-distributed-tracing: one trace crosses both peers and both directions,
/// over real mutual TLS.
@Suite("Traces")
struct TracingTests {
  @Test("A request and the request its handler sends back are one trace: send → handle → send → handle", arguments: Mode.allCases)
  func oneTraceBothDirections(mode: Mode) async throws {
    let hubTracer = InMemoryTracer()
    let edgeTracer = InMemoryTracer()
    let hubPeer = LockedBox<Peer?>(nil)
    try await ModesIntegrationTests.withHubAndEdge(
      mode: mode,
      configure: { $0.observability.tracer = hubTracer },
      edgeConfigure: { $0.observability.tracer = edgeTracer },
      hubHandler: { request in
        // The handler calls back the other way, inside its span.
        let back = try await hubPeer.current!.send("back: \(request.text)", to: "edge")
        return "hub saw \(request.text), edge said \(back.text)"
      }
    ) { hub, edge in
      hubPeer.withLock { $0 = hub.peer }
      let reply = try await edge.peer.send("hello", to: "hub")
      #expect(reply.text == "hub saw hello, edge said ack from edge: back: hello")
    }
    let edgeSpans = edgeTracer.finishedSpans
    let hubSpans = hubTracer.finishedSpans
    let edgeSend = try #require(edgeSpans.first { $0.operationName == "send" && $0.kind == .client }, "\(edgeSpans.map(\.operationName))")
    let hubHandle = try #require(hubSpans.first { $0.operationName == "handle" && $0.kind == .server }, "\(hubSpans.map(\.operationName))")
    let hubSend = try #require(hubSpans.first { $0.operationName == "send" })
    let edgeHandle = try #require(edgeSpans.first { $0.operationName == "handle" })

    let traces = Set([edgeSend, hubHandle, hubSend, edgeHandle].map(\.traceID))
    #expect(traces.count == 1, "one trace across both peers: \(traces)")
    #expect(hubHandle.parentSpanID == edgeSend.spanID)
    #expect(hubSend.parentSpanID == hubHandle.spanID)
    #expect(edgeHandle.parentSpanID == hubSend.spanID)
    #expect(edgeSend.attributes["peer_agent.peer"]?.toSpanAttribute() == "hub")
    #expect(edgeSend.attributes["peer_agent.outcome"]?.toSpanAttribute() == "replied")
    #expect(hubHandle.attributes["peer_agent.peer"]?.toSpanAttribute() == "edge")
    #expect(edgeHandle.attributes["peer_agent.link"]?.toSpanAttribute() == (mode == .single ? "getTask" : "sendStatus"))
  }

  @Test("A request that fails ends its span with the failure")
  func failedSpan() async throws {
    let tracer = InMemoryTracer()
    try await ModesIntegrationTests.withHubAndEdge(
      mode: .single,
      edgeConfigure: { $0.observability.tracer = tracer },
      hubHandler: { _ in throw Refused() }
    ) { _, edge in
      await #expect(throws: PeerAgentError.self) { _ = try await edge.peer.send("no", to: "hub") }
    }
    let send = try #require(tracer.finishedSpans.first { $0.operationName == "send" })
    #expect(send.attributes["peer_agent.outcome"]?.toSpanAttribute() == "remoteHandlerFailed")
    #expect(send.status?.code == .error)
  }

  struct Refused: Error {}
}
