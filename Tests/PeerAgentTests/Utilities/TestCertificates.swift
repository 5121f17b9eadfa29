import Foundation
import PeerAgent

/// Certificates made in memory by the same code that backs `peer-agent certs`.
struct TestCertificates: Sendable {
  let authority: DevelopmentCertificates
  let other: DevelopmentCertificates

  init() throws {
    self.authority = try DevelopmentCertificates.makeAuthority(name: "test CA")
    self.other = try DevelopmentCertificates.makeAuthority(name: "another CA")
  }

  /// Mutual TLS for `name`, issued by the test CA (or `issuer`), trusting the test CA.
  func security(
    for name: String,
    issuer: DevelopmentCertificates? = nil,
    notValidAfter: Date = Date().addingTimeInterval(3600)
  ) throws -> Peer.Config.Security {
    let issuer = issuer ?? self.authority
    let issued = try issuer.issue(
      name: name,
      notValidBefore: notValidAfter.addingTimeInterval(-7200),
      notValidAfter: notValidAfter
    )
    return .mutualTLS(
      trustRoots: .pem(self.authority.authority.certificatePEM),
      certificateChain: .pem(issued.certificatePEM),
      privateKey: .pem(issued.privateKeyPEM)
    )
  }
}
