import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import Testing

@testable import ContactProto
@testable import PeerAgent

/// Every refused connection gets a clear reason, on both sides.
@Suite("Refused connections")
struct RefusalTests {
  /// Starts a mutual-TLS hub, then a dialer with `edgeSecurity`, and returns what each side
  /// reported.
  private func attempt(
    edgeSecurity: @escaping @Sendable (TestCertificates) throws -> Peer.Config.Security,
    hubSecurity: (@Sendable (TestCertificates) throws -> Peer.Config.Security)? = nil,
    pin: String? = "hub"
  ) async throws -> (hub: String?, edge: String?) {
    let certificates = try TestCertificates()
    let hub = try TestPeer(
      name: "hub",
      mode: .single,
      security: try hubSecurity?(certificates) ?? certificates.security(for: "hub"),
      listen: true
    )
    let reasons = Mutex<(String?, String?)>((nil, nil))
    try await withRunningPeers([hub]) {
      let address = try await hub.peer.listeningAddress
      let edge = try TestPeer(
        name: "edge",
        mode: .single,
        security: try edgeSecurity(certificates),
        connect: [Peer.Target(address: address, expectedIdentity: pin)]
      )
      try await withRunningPeers([edge]) {
        let atEdge = await edge.events.wait {
          switch $0 {
          case .refused, .unreachable: return true
          default: return false
          }
        }
        let atHub = await hub.events.refusal(timeout: .seconds(3))
        let edgeReason: String?
        switch atEdge {
        case .refused(_, let reason), .unreachable(_, let reason): edgeReason = reason
        default: edgeReason = nil
        }
        reasons.withLock { $0 = (atHub, edgeReason) }
        #expect(hub.peer.connectedPeers.isEmpty)
        #expect(edge.peer.connectedPeers.isEmpty)
      }
    }
    return reasons.withLock { $0 }
  }

  @Test("A dialer certificate from another CA")
  func otherCA() async throws {
    let (hub, edge) = try await self.attempt { certificates in
      // The edge trusts both CAs (so it accepts the hub) but its own certificate is from the other.
      let issued = try certificates.other.issue(name: "edge")
      return .mutualTLS(
        trustRoots: .pem(certificates.authority.authority.certificatePEM + "\n" + certificates.other.authority.certificatePEM),
        certificateChain: .pem(issued.certificatePEM),
        privateKey: .pem(issued.privateKeyPEM)
      )
    }
    #expect(hub?.contains("certificate 'edge'") == true, "\(hub ?? "nil")")
    #expect(hub?.contains("does not chain to the configured CA") == true, "\(hub ?? "nil")")
    #expect(edge?.contains("the listener refused this peer's certificate") == true, "\(edge ?? "nil")")
  }

  @Test("An expired dialer certificate")
  func expired() async throws {
    let (hub, edge) = try await self.attempt {
      try $0.security(for: "edge", notValidAfter: Date().addingTimeInterval(-60))
    }
    #expect(hub?.contains("certificate 'edge' expired on") == true, "\(hub ?? "nil")")
    #expect(edge?.contains("the listener refused this peer's certificate") == true, "\(edge ?? "nil")")
  }

  @Test("A listener that is not the peer the dialer pinned")
  func wrongName() async throws {
    let (hub, edge) = try await self.attempt(edgeSecurity: { try $0.security(for: "edge") }, pin: "hub2")
    #expect(edge?.contains("expected peer 'hub2' but the certificate presented is 'hub'") == true, "\(edge ?? "nil")")
    #expect(hub?.contains("the dialer refused this listener's certificate") == true, "\(hub ?? "nil")")
  }

  @Test("A listener certificate from another CA")
  func listenerFromOtherCA() async throws {
    let (_, edge) = try await self.attempt(
      edgeSecurity: { try $0.security(for: "edge") },
      hubSecurity: { certificates in
        let issued = try certificates.other.issue(name: "hub")
        return .mutualTLS(
          trustRoots: .pem(certificates.authority.authority.certificatePEM + "\n" + certificates.other.authority.certificatePEM),
          certificateChain: .pem(issued.certificatePEM),
          privateKey: .pem(issued.privateKeyPEM)
        )
      }
    )
    #expect(edge?.contains("the listener's certificate was refused") == true, "\(edge ?? "nil")")
    #expect(edge?.contains("does not chain to the configured CA") == true, "\(edge ?? "nil")")
  }

  @Test("A plaintext dialer against a TLS listener")
  func plaintextToTLS() async throws {
    let (hub, edge) = try await self.attempt(edgeSecurity: { _ in .plaintext }, pin: nil)
    #expect(hub?.contains("does not speak TLS") == true, "\(hub ?? "nil")")
    #expect(edge?.contains("TLS") == true, "\(edge ?? "nil")")
  }

  @Test("A TLS dialer against a plaintext listener")
  func tlsToPlaintext() async throws {
    let (hub, edge) = try await self.attempt(
      edgeSecurity: { try $0.security(for: "edge") },
      hubSecurity: { _ in .plaintext }
    )
    #expect(hub?.contains("did not send HTTP/2 in plaintext") == true, "\(hub ?? "nil")")
    #expect(edge?.contains("the listener does not speak TLS") == true, "\(edge ?? "nil")")
  }

  @Test("A client without a certificate")
  func noClientCertificate() async throws {
    let certificates = try TestCertificates()
    let hub = try TestPeer(name: "hub", mode: .single, security: try certificates.security(for: "hub"), listen: true)
    try await withRunningPeers([hub]) {
      let address = try await hub.peer.listeningAddress
      let transport = try HTTP2ClientTransport.Posix(
        target: .ipv4(host: address.host, port: address.port),
        transportSecurity: .tls { tls in
          tls.trustRoots = .certificates([.bytes(Array(certificates.authority.authority.certificatePEM.utf8), format: .pem)])
          tls.serverCertificateVerification = .noHostnameVerification
        }
      )
      try await withGRPCClient(transport: transport) { client in
        let contact = Contact_Contact.Client(wrapping: client)
        await #expect(throws: RPCError.self) {
          try await contact.getTask(Contact_Empty(), options: .defaults { $0.waitForReady = false }) { response in
            for try await _ in response.messages {}
          }
        }
      }
      let reason = await hub.events.refusal()
      #expect(reason?.contains("the dialer sent no client certificate") == true, "\(reason ?? "nil")")
    }
  }
}
