import NIOPosix
import Synchronization
import Testing

@testable import PeerAgent

/// Where a stream's code runs: on the connection's event loop (the default) or on the pool.
@Suite("Execution: event loop or concurrency pool")
struct ExecutionTests {
  @Test("Handlers run where the configuration says, and requests go both ways in both modes", arguments: Mode.allCases)
  func handlersRunWhereConfigured(mode: Mode) async throws {
    for execution in [Peer.Config.Transport.Execution.eventLoop, .concurrencyPool] {
      let onLoop = Mutex<[Bool]>([])
      try await ModesIntegrationTests.withHubAndEdge(
        mode: mode,
        configure: { $0.transport.execution = execution },
        hubHandler: { request in
          onLoop.withLock { $0.append(MultiThreadedEventLoopGroup.currentEventLoop != nil) }
          return "ack \(request.text)"
        }
      ) { hub, edge in
        #expect((hub.peer.taskExecutor != nil) == (execution == .eventLoop))
        for n in 0 ..< 20 {
          #expect(try await edge.peer.send("up \(n)", to: "hub").text == "ack up \(n)")
          #expect(try await hub.peer.send("down \(n)", to: "edge").text == "ack from edge: down \(n)")
        }
        // A caller on the peer's loop works like any other.
        let reply = try await withTaskExecutorPreference(edge.peer.taskExecutor) {
          try await edge.peer.send("from the loop", to: "hub")
        }
        #expect(reply.text == "ack from the loop")
      }
      let seen = onLoop.withLock { $0 }
      #expect(seen.count == 21)
      #expect(seen.allSatisfy { $0 == (execution == .eventLoop) }, "\(execution): on the loop \(seen)")
    }
  }
}
