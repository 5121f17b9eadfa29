import ContactProto
import Crypto
import Foundation
import GRPCCore
import SwiftASN1
import GRPCNIOTransportHTTP2
import Testing
import X509

@testable import PeerAgent

/// A reply is taken only from the peer its request was sent to: another peer of the same CA
/// that learns (or guesses) a request id cannot answer it.
@Suite("Trust: replies only from the addressee, unpredictable request ids")
struct AddresseeTests {
  @Test("A tellResult from another certificate of the CA naming the hub's request id is dropped and counted; the real reply still arrives")
  func forgedTellResult() async throws {
    let certificates = try TestCertificates()
    let gate = Gate()
    try await ModesIntegrationTests.withHubAndEdge(
      mode: .single,
      edgeHandler: { _ in
        await gate.wait()
        return "real"
      },
      certificates: certificates
    ) { hub, edge in
      // Never leave the edge's handler parked, whatever this test hits.
      defer { gate.open() }
      let address = try await hub.peer.listeningAddress
      let delivery = try await hub.peer.submit("work", to: "edge", timeout: .seconds(20))
      // The edge has the request (its handler waits at the gate).
      let giveUp = ContinuousClock.now.advanced(by: .seconds(10))
      while edge.requests.all.isEmpty, ContinuousClock.now < giveUp {
        try await Task.sleep(for: .milliseconds(10))
      }
      #expect(edge.requests.all.count == 1)

      // edge2, a valid certificate of the same CA, answers the hub's request by its id.
      let forger = try certificates.authority.issue(name: "edge2")
      let transport = try HTTP2ClientTransport.Posix(
        target: .ipv4(address: address.host, port: address.port),
        transportSecurity: .mTLS(
          certificateChain: [.bytes(Array(forger.certificatePEM.utf8), format: .pem)],
          privateKey: .bytes(Array(forger.privateKeyPEM.utf8), format: .pem)
        ) { tls in
          tls.trustRoots = .certificates([.bytes(Array(certificates.authority.authority.certificatePEM.utf8), format: .pem)])
          tls.serverCertificateVerification = .noHostnameVerification
        }
      )
      try await withGRPCClient(transport: transport) { client in
        let contact = Contact_Contact.Client(wrapping: client)
        let forged = {
          var result = Contact_Result()
          result.id = delivery.id
          result.ret = "forged"
          return result
        }()
        try await contact.tellResult(
          options: .defaults { $0.waitForReady = false },
          requestProducer: { writer in try await writer.write(forged) }
        ) { response in
          _ = try response.message
        }
      }
      let counted = ContinuousClock.now.advanced(by: .seconds(10))
      while hub.peer.deliveryStatistics.misdirectedReplies == 0, ContinuousClock.now < counted {
        try await Task.sleep(for: .milliseconds(10))
      }
      #expect(hub.peer.deliveryStatistics.misdirectedReplies == 1)

      gate.open()
      let reply = try await delivery.reply()
      #expect(reply.text == "real")
      #expect(reply.from == .verified("edge"))
    }
  }

  @Test("Request ids are 128 random bits: 32 hex digits, no two alike, no shared run prefix")
  func unpredictableIDs() async throws {
    let peer = try Peer(config: .defaults(mode: .single)) { _ in "" }
    var ids: [String] = []
    for n in 0 ..< 200 {
      ids.append(try await peer.submit("\(n)", to: "nobody", timeout: .seconds(30)).id)
    }
    #expect(Set(ids).count == ids.count)
    #expect(ids.allSatisfy { $0.count == 32 && $0.allSatisfy(\.isHexDigit) })
    // A run prefix would make every id start the same; random ids share a first digit only by chance.
    #expect(Set(ids.map { $0.prefix(4) }).count > 150)
  }

  @Test("A pin is matched against the identity only: a certificate with CN 'hub' whose first DNS name is 'edge2' is not 'hub'")
  func pinMatchesIdentityOnly() async throws {
    let certificates = try TestCertificates()
    let caCertificate = try Certificate(pemEncoded: certificates.authority.authority.certificatePEM)
    let caKey = try P256.Signing.PrivateKey(pemRepresentation: certificates.authority.authority.privateKeyPEM)
    let key = P256.Signing.PrivateKey()
    let leaf = try Certificate(
      version: .v3,
      serialNumber: Certificate.SerialNumber(),
      publicKey: .init(key.publicKey),
      notValidBefore: Date().addingTimeInterval(-60),
      notValidAfter: Date().addingTimeInterval(3600),
      issuer: caCertificate.subject,
      subject: try DistinguishedName { CommonName("hub") },
      signatureAlgorithm: .ecdsaWithSHA256,
      extensions: try Certificate.Extensions {
        Critical(BasicConstraints.notCertificateAuthority)
        Critical(KeyUsage(digitalSignature: true))
        try ExtendedKeyUsage([.serverAuth, .clientAuth])
        SubjectAlternativeNames([.dnsName("edge2")])
        AuthorityKeyIdentifier(keyIdentifier: try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
      },
      issuerPrivateKey: .init(caKey)
    )
    let verifier = CertificateVerifier(trustRoots: [caCertificate])
    #expect(try await verifier.verify(chain: [leaf], presentedBy: .listener) == .verified("edge2"))
    await #expect(throws: CertificateVerifier.Failure("expected peer 'hub' but the certificate presented is 'edge2'")) {
      _ = try await verifier.verify(chain: [leaf], presentedBy: .listener, expectedIdentity: "hub")
    }
  }
}
