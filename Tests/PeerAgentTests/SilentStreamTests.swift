import ContactProto
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import Testing

@testable import PeerAgent

/// A remote that heartbeated in an earlier session and then opens a stream on which nothing
/// ever arrives — no response headers, no message, no heartbeat — is found stalled within the
/// heartbeat timeout, not waited on forever.
@Suite("Silent streams")
struct SilentStreamTests {
  /// A `Contact` listener that acts as a heartbeating PeerAgent on its first `sendStatus`
  /// (announces heartbeats, answers them, ends the stream after the first), never answers at
  /// all on its second (the handler never returns, so not even headers go out), and acts
  /// normally again from the third on.
  struct StallOnceService: Contact_Contact.StreamingServiceProtocol {
    final class Counter: Sendable {
      let value = Atomic<Int>(0)
    }
    let counter = Counter()
    /// Holds the silent call until the test ends.
    let release = Gate()
    var calls: Int { self.counter.value.load(ordering: .relaxed) }

    func sendStatus(
      request: StreamingServerRequest<Contact_ClientMsg>,
      context: ServerContext
    ) async throws -> StreamingServerResponse<Contact_Result> {
      let call = self.counter.value.wrappingAdd(1, ordering: .relaxed).newValue
      if call == 2 {
        await self.release.wait()
      }
      return StreamingServerResponse(metadata: [Heartbeat.metadataKey: "200"]) { writer in
        for try await message in request.messages {
          var result = Contact_Result()
          result.id = message.id
          result.heartbeat = message.heartbeat
          result.ret = message.heartbeat ? "" : "ack \(message.msg)"
          try await writer.write(result)
          if call == 1 && message.heartbeat { break }
        }
        return [:]
      }
    }

    func getTask(
      request: StreamingServerRequest<Contact_Empty>,
      context: ServerContext
    ) async throws -> StreamingServerResponse<Contact_ServerMsg> {
      throw RPCError(code: .unimplemented, message: "not in this test")
    }

    func tellResult(
      request: StreamingServerRequest<Contact_Result>,
      context: ServerContext
    ) async throws -> StreamingServerResponse<Contact_Empty> {
      throw RPCError(code: .unimplemented, message: "not in this test")
    }
  }

  @Test("A stream of a known heartbeating remote that stays silent from its start is down within the timeout, then redialed")
  func silentFromTheStart() async throws {
    let service = StallOnceService()
    let server = GRPCServer(
      transport: HTTP2ServerTransport.Posix(
        address: .ipv4(host: "127.0.0.1", port: 0),
        transportSecurity: .plaintext
      ),
      services: [service]
    )
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      defer {
        service.release.open()
        server.beginGracefulShutdown()
      }
      let address = try #require(try await server.listeningAddress?.ipv4)
      let edge = try TestPeer(
        name: "edge",
        mode: .dual,
        security: .plaintext,
        connect: [Peer.Target(address: PeerAddress(host: "127.0.0.1", port: address.port), expectedIdentity: nil)],
        configure: { config in
          config.health.heartbeatInterval = .milliseconds(200)
          config.health.heartbeatTimeout = .seconds(1)
          config.reconnect.initialBackoff = .milliseconds(20)
          config.reconnect.maximumBackoff = .milliseconds(100)
        }
      )
      try await withRunningPeers([edge], timeout: .seconds(30)) {
        // Third sendStatus: the one after the silent one.
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        while service.calls < 2, ContinuousClock.now < deadline {
          try await Task.sleep(for: .milliseconds(10))
        }
        let silentSince = ContinuousClock.now
        while service.calls < 3, ContinuousClock.now < deadline {
          try await Task.sleep(for: .milliseconds(10))
        }
        let redialedAfter = ContinuousClock.now - silentSince
        #expect(service.calls >= 3, "the silent stream was never given up")
        // How soon is the heartbeat's business, timed on its own clock; here: that it happens.
        print("silent stream given up and redialed after \(redialedAfter)")
        let stalled = edge.events.all.contains {
          if case .linkState(_, .down, let reason) = $0 { return reason?.contains("stalled") == true }
          return false
        }
        #expect(stalled, "the silent link was not reported down as stalled: \(edge.events.all)")
        // The link works again.
        let name = try #require(edge.peer.connectedPeers.first?.name)
        do {
          #expect(try await edge.peer.send("after", to: name, timeout: .seconds(5)).text == "ack after")
        } catch {
          Issue.record("after the redial, a send failed: \(error); server calls \(service.calls); events: \(edge.events.all)")
        }
      }
    }
  }
}
