import Crypto
import Foundation
import Testing
import X509
import SwiftASN1

@testable import PeerAgent

@Suite("Identity from verified certificates")
struct IdentityTests {
  private func certificate(_ pem: String) throws -> Certificate {
    try Certificate(pemEncoded: pem)
  }

  @Test("The identity is the first DNS name that is not localhost")
  func identityFromSAN() throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let hub = try self.certificate(try ca.issue(name: "hub").certificatePEM)
    #expect(CertificateNames.identity(of: hub) == "hub")
    #expect(CertificateNames.names(of: hub) == ["hub", "localhost"])
  }

  @Test("Without DNS names, the identity is the common name")
  func identityFromCN() throws {
    let key = P256.Signing.PrivateKey()
    let name = try DistinguishedName { CommonName("edge-cn") }
    let certificate = try Certificate(
      version: .v3,
      serialNumber: .init(),
      publicKey: .init(key.publicKey),
      notValidBefore: Date().addingTimeInterval(-60),
      notValidAfter: Date().addingTimeInterval(3600),
      issuer: name,
      subject: name,
      signatureAlgorithm: .ecdsaWithSHA256,
      extensions: Certificate.Extensions(),
      issuerPrivateKey: .init(key)
    )
    #expect(CertificateNames.identity(of: certificate) == "edge-cn")
  }

  @Test("A certificate from the CA verifies, as the name it carries")
  func verifies() async throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let verifier = CertificateVerifier(trustRoots: [try self.certificate(ca.authority.certificatePEM)])
    let edge = try self.certificate(try ca.issue(name: "edge").certificatePEM)
    #expect(try await verifier.verify(chain: [edge], presentedBy: .dialer) == .verified("edge"))
    #expect(try await verifier.verify(chain: [edge], presentedBy: .listener, expectedIdentity: "edge") == .verified("edge"))
  }

  @Test("Expired, foreign and mis-named certificates are refused with the reason")
  func refuses() async throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let other = try DevelopmentCertificates.makeAuthority(name: "other CA")
    let verifier = CertificateVerifier(trustRoots: [try self.certificate(ca.authority.certificatePEM)])
    let expired = try self.certificate(
      try ca.issue(
        name: "old",
        notValidBefore: Date().addingTimeInterval(-7200),
        notValidAfter: Date().addingTimeInterval(-3600)
      ).certificatePEM
    )
    let foreign = try self.certificate(try other.issue(name: "stranger").certificatePEM)
    let edge = try self.certificate(try ca.issue(name: "edge").certificatePEM)

    await #expect(throws: CertificateVerifier.Failure.self) { try await verifier.verify(chain: [], presentedBy: .dialer) }
    await #expect {
      try await verifier.verify(chain: [expired], presentedBy: .dialer)
    } throws: { "\($0)".contains("certificate 'old' expired on") }
    await #expect {
      try await verifier.verify(chain: [foreign], presentedBy: .dialer)
    } throws: { "\($0)".contains("'stranger'") && "\($0)".contains("does not chain to the configured CA") }
    await #expect {
      try await verifier.verify(chain: [edge], presentedBy: .listener, expectedIdentity: "hub")
    } throws: { "\($0)" == "expected peer 'hub' but the certificate presented is 'edge'" }
  }

  @Test("Without a pin, the dialer checks the dialed host against the certificate")
  func hostCheck() throws {
    let ca = try DevelopmentCertificates.makeAuthority()
    let hub = try self.certificate(try ca.issue(name: "hub").certificatePEM)
    try HostCheck.verify(hub, matches: "127.0.0.1")
    try HostCheck.verify(hub, matches: "::1")
    try HostCheck.verify(hub, matches: "hub")
    #expect(throws: CertificateVerifier.Failure.self) { try HostCheck.verify(hub, matches: "10.1.2.3") }
    #expect(throws: CertificateVerifier.Failure.self) { try HostCheck.verify(hub, matches: "edge") }
  }

  @Test(
    "grpc-timeout values are checked before grpc-swift decodes them",
    arguments: [
      ("1S", true), ("99999999n", true), ("30m", true), ("-1S", false), ("1", false),
      ("S", false), ("123456789S", false), ("1s", false), (" 1S", false), ("1.5S", false),
    ]
  )
  func timeoutGuard(value: String, isValid: Bool) {
    #expect(GRPCTimeoutGuard.isValid(value) == isValid)
  }
}
