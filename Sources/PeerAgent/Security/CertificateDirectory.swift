private import Foundation
private import X509
private import SwiftASN1

/// The layout of a certificate folder — the one place that knows it: what `peer-agent certs`
/// writes (``DevelopmentCertificates/write(names:to:)``) and what `--certs DIR` and
/// ``Peer/Config/Security/mutualTLS(directory:name:)`` read.
///
/// - `ca.pem`: the deployment's CA certificate (the only trust root);
/// - `ca-key.pem`: its private key (development CAs only: it mints identities);
/// - `NAME.pem` and `NAME-key.pem`: each peer's certificate and private key.
public struct CertificateDirectory: Sendable, Hashable {
  /// The folder.
  public var path: String

  /// The layout in `path`.
  public init(_ path: String) {
    self.path = path
  }

  /// The CA certificate: `ca.pem`.
  public var authorityCertificate: String { self.file("ca.pem") }

  /// The CA's private key: `ca-key.pem`.
  public var authorityKey: String { self.file("ca-key.pem") }

  /// The certificate of peer `name`: `NAME.pem`.
  public func certificate(for name: String) -> String { self.file("\(name).pem") }

  /// The private key of peer `name`: `NAME-key.pem`.
  public func privateKey(for name: String) -> String { self.file("\(name)-key.pem") }

  /// The CA's revocation list: `revoked.pem` (`peer-agent certs --revoke` writes it).
  public var revocationList: String { self.file("revoked.pem") }

  /// The peer names the folder holds a certificate and key for, sorted.
  public var names: [String] {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: self.path)) ?? []
    return files.filter { $0.hasSuffix("-key.pem") && $0 != "ca-key.pem" }
      .map { String($0.dropLast("-key.pem".count)) }
      .filter { files.contains("\($0).pem") }
      .sorted()
  }

  /// The fingerprint of the key in `NAME.pem`: an allowlist entry's pin.
  public func keyFingerprint(for name: String) throws -> KeyFingerprint {
    let path = self.certificate(for: name)
    guard let data = FileManager.default.contents(atPath: path) else {
      throw PeerAgentError(code: .invalidConfiguration, message: "\(path) not found: no certificate for '\(name)'")
    }
    return KeyFingerprint(of: try Certificate(pemEncoded: String(decoding: data, as: UTF8.self)))
  }

  private func file(_ name: String) -> String {
    (self.path as NSString).appendingPathComponent(name)
  }
}

extension Peer.Config.Security {
  /// Mutual TLS for peer `name` from a certificate folder laid out as ``CertificateDirectory``
  /// says (`ca.pem`, `NAME.pem`, `NAME-key.pem`), as `peer-agent certs` writes it.
  public static func mutualTLS(directory: String, name: String) -> Self {
    let folder = CertificateDirectory(directory)
    return .mutualTLS(
      trustRoots: .file(folder.authorityCertificate),
      certificateChain: .file(folder.certificate(for: name)),
      privateKey: .file(folder.privateKey(for: name))
    )
  }
}
