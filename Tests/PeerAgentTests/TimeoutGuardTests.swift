import Foundation
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Testing

@testable import PeerAgent

/// grpc-swift-2 2.4.3 traps on `grpc-timeout: -1S`; one such request must not take a peer down.
@Suite("Malformed grpc-timeout")
struct TimeoutGuardTests {
  /// Sends one HTTP/2 request to `/Contact/sendStatus` with `timeout` as its grpc-timeout, over
  /// mutual TLS, and returns the grpc-status the listener answered with.
  private func sendRaw(
    timeout: String,
    to address: PeerAddress,
    certificates: TestCertificates
  ) async throws -> String? {
    let issued = try certificates.authority.issue(name: "raw-client")
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(issued.certificatePEM.utf8)).map { .certificate($0) }
    tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(issued.privateKeyPEM.utf8), format: .pem))
    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(certificates.authority.authority.certificatePEM.utf8)))
    tls.certificateVerification = .noHostnameVerification
    tls.applicationProtocols = ["h2"]
    let context = try NIOSSLContext(configuration: tls)

    let multiplexer = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connect(host: address.host, port: address.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
          return try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(mode: .client) { stream in
            stream.eventLoop.makeSucceededVoidFuture()
          }
        }
      }
    let stream = try await multiplexer.openStream { channel in
      channel.eventLoop.makeCompletedFuture {
        try NIOAsyncChannel<HTTP2Frame.FramePayload, HTTP2Frame.FramePayload>(wrappingChannelSynchronously: channel)
      }
    }
    return try await stream.executeThenClose { inbound, outbound in
      let headers: HPACKHeaders = [
        ":method": "POST", ":scheme": "https", ":path": "/Contact/sendStatus",
        ":authority": "localhost", "content-type": "application/grpc", "te": "trailers",
        "grpc-timeout": timeout,
      ]
      try await outbound.write(.headers(.init(headers: headers)))
      for try await frame in inbound {
        if case .headers(let received) = frame, let status = received.headers.first(name: "grpc-status") {
          return status
        }
      }
      return nil
    }
  }

  @Test("A request with grpc-timeout -1S is refused; the listener keeps serving every link")
  func negativeTimeout() async throws {
    let certificates = try TestCertificates()
    let hub = try TestPeer(name: "hub", mode: .single, security: try certificates.security(for: "hub"), listen: true)
    try await withRunningPeers([hub]) {
      let address = try await hub.peer.listeningAddress
      let edge = try TestPeer(
        name: "edge",
        mode: .single,
        security: try certificates.security(for: "edge"),
        connect: [Peer.Target(address: address, expectedIdentity: "hub")]
      )
      try await withRunningPeers([edge]) {
        #expect(await hub.waitUntilConnected(to: "edge"))
        let before = try await hub.peer.send("before", to: "edge")
        #expect(before.text == "ack from edge: before")

        for malformed in ["-1S", "1x", "999999999S"] {
          let status = try await self.sendRaw(timeout: malformed, to: address, certificates: certificates)
          #expect(status == "3", "grpc-timeout \(malformed) answered with grpc-status \(status ?? "none")")
        }

        // The established link, both ways, and a new connection are still served.
        let after = try await hub.peer.send("after", to: "edge")
        #expect(after.text == "ack from edge: after")
        let back = try await edge.peer.send("still there?", to: "hub")
        #expect(back.text == "ack from hub: still there?")
        #expect(hub.requests.all.map(\.text) == ["still there?"])
      }
    }
  }
}
