internal import Foundation
internal import NIOSSL
internal import X509
internal import SwiftASN1

/// The TLS material of one peer, read and checked once, when the peer is created.
struct TLSMaterial: Sendable {
  /// The deployment's CA, as NIOSSL and swift-certificates see it.
  var trustRoots: [NIOSSLCertificate]
  var verifier: CertificateVerifier
  /// This peer's certificate chain and key.
  var certificateChain: [NIOSSLCertificate]
  var privateKey: NIOSSLPrivateKey
  /// The name in this peer's own certificate.
  var ownIdentity: String
  /// Why this peer's own certificate would not verify against its own CA, if it would not.
  var ownCertificateProblem: String?
  /// The same material as PEM, for the transports.
  var trustRootsPEM: String
  var certificatePEM: String
  var privateKeyPEM: String

  init(_ config: Peer.Config.MutualTLS) throws {
    let caPEM = try Self.read(config.trustRoots, what: "CA certificate")
    let certPEM = try Self.read(config.certificateChain, what: "certificate")
    let keyPEM = try Self.read(config.privateKey, what: "private key")
    self.trustRootsPEM = caPEM
    self.certificatePEM = certPEM
    self.privateKeyPEM = keyPEM

    do {
      self.trustRoots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
    } catch {
      throw Self.invalid("the CA certificate \(config.trustRoots) is not a PEM certificate", error)
    }
    guard !self.trustRoots.isEmpty else {
      throw Self.invalid("the CA file \(config.trustRoots) holds no certificate", nil)
    }
    do {
      self.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certPEM.utf8))
    } catch {
      throw Self.invalid("the certificate \(config.certificateChain) is not a PEM certificate", error)
    }
    guard !self.certificateChain.isEmpty else {
      throw Self.invalid("the certificate file \(config.certificateChain) holds no certificate", nil)
    }
    do {
      self.privateKey = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
    } catch {
      throw Self.invalid("the private key \(config.privateKey) is not a PEM private key", error)
    }

    let roots: [Certificate]
    let chain: [Certificate]
    do {
      roots = try self.trustRoots.map { try Certificate(derEncoded: try $0.toDERBytes()) }
      chain = try self.certificateChain.map { try Certificate(derEncoded: try $0.toDERBytes()) }
    } catch {
      throw Self.invalid("cannot parse the certificates", error)
    }
    self.verifier = CertificateVerifier(trustRoots: roots)

    // The key must belong to the certificate: BoringSSL checks it when it builds a context.
    do {
      _ = try NIOSSLContext(
        configuration: .makeServerConfiguration(
          certificateChain: self.certificateChain.map { .certificate($0) },
          privateKey: .privateKey(self.privateKey)
        )
      )
    } catch {
      throw Self.invalid(
        "the private key \(config.privateKey) does not belong to the certificate \(config.certificateChain)",
        error
      )
    }
    // The peer's own certificate should chain to the CA it trusts and be valid now; if not,
    // peers that trust the same CA will refuse it. Not an error (a deployment may trust
    // another CA than its own issuer), but worth saying at start rather than per handshake.
    self.ownIdentity = CertificateVerifier.identityName(of: chain[0]) ?? "peer"
    do {
      _ = try self.verifier.verify(chain: chain, presentedBy: .dialer)
      self.ownCertificateProblem = nil
    } catch {
      self.ownCertificateProblem = "\(error)"
    }
  }

  private static func read(_ source: PEMSource, what: String) throws -> String {
    switch source.wrapped {
    case .text(let text):
      return text
    case .file(let path):
      guard FileManager.default.fileExists(atPath: path) else {
        throw PeerAgentError(code: .invalidConfiguration, message: "\(what) file not found: \(path)")
      }
      do {
        return try String(contentsOfFile: path, encoding: .utf8)
      } catch {
        throw PeerAgentError(
          code: .invalidConfiguration,
          message: "cannot read the \(what) file \(path)",
          cause: error
        )
      }
    }
  }

  private static func invalid(_ message: String, _ cause: (any Error)?) -> PeerAgentError {
    PeerAgentError(code: .invalidCertificate, message: message, cause: cause)
  }
}
