import ContactProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import Testing

@testable import PeerAgent

/// The standard gRPC health service on a listener, over real mutual TLS: SERVING while the peer
/// runs, NOT_SERVING while it drains; grpcio's health client is checked by scripts/interop.sh.
@Suite("Health: grpc.health.v1 on every listener")
struct HealthTests {
  static func request(_ service: String) -> Grpc_Health_V1_HealthCheckRequest {
    var request = Grpc_Health_V1_HealthCheckRequest()
    request.service = service
    return request
  }

  @Test("Check and Watch say SERVING while the peer runs, NOT_SERVING once it drains; unknown services are told so")
  func servingThenDraining() async throws {
    let certificates = try TestCertificates()
    let gate = Gate()
    let hub = try TestPeer(
      name: "hub",
      mode: .single,
      security: try certificates.security(for: "hub"),
      listen: true,
      configure: { $0.shutdown.gracePeriod = .seconds(20) }
    )
    try await withRunningPeers([hub]) {
      defer { gate.open() }
      let address = try await hub.peer.listeningAddress
      let prober = try certificates.authority.issue(name: "prober")
      let transport = try HTTP2ClientTransport.Posix(
        target: .ipv4(address: address.host, port: address.port),
        transportSecurity: .mTLS(
          certificateChain: [.bytes(Array(prober.certificatePEM.utf8), format: .pem)],
          privateKey: .bytes(Array(prober.privateKeyPEM.utf8), format: .pem)
        ) { tls in
          tls.trustRoots = .certificates([.bytes(Array(certificates.authority.authority.certificatePEM.utf8), format: .pem)])
          tls.serverCertificateVerification = .noHostnameVerification
        }
      )
      try await withGRPCClient(transport: transport) { client in
        let health = Grpc_Health_V1_Health.Client(wrapping: client)
        let options = CallOptions.defaults { $0.waitForReady = false }
        for service in ["", "Contact"] {
          let status = try await health.check(Self.request(service), options: options).status
          #expect(status == .serving, "service '\(service)'")
        }
        await #expect {
          _ = try await health.check(Self.request("NoSuchService"), options: options)
        } throws: { error in
          (error as? RPCError)?.code == .notFound
        }
        let unknown = try await health.watch(Self.request("NoSuchService"), options: options) {
          response -> Grpc_Health_V1_HealthCheckResponse.ServingStatus? in
          for try await message in response.messages { return message.status }
          return nil
        }
        #expect(unknown == .serviceUnknown)

        // Watch sees SERVING, then NOT_SERVING once the hub drains, then the stream ends.
        let seen = LockedBox<[Grpc_Health_V1_HealthCheckResponse.ServingStatus]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask {
            try await health.watch(Self.request(""), options: options) { response in
              for try await message in response.messages { seen.withLock { $0.append(message.status) } }
            }
          }
          let deadline = ContinuousClock.now.advanced(by: .seconds(10))
          while seen.withLock({ $0.isEmpty }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
          // A request in flight keeps the hub draining while Check is asked.
          let edgeRequest = Task { try? await hub.peer.send("keep me busy", to: "nobody", timeout: .seconds(4)) }
          defer { edgeRequest.cancel() }
          try await Task.sleep(for: .milliseconds(100))
          hub.peer.beginGracefulShutdown()
          try await group.next()
        }
        #expect(seen.withLock { $0 } == [.serving, .notServing])
        let draining = try await health.check(Self.request(""), options: options).status
        #expect(draining == .notServing)
      }
    }
  }
}
