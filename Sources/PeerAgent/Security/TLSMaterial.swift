internal import Foundation
internal import NIOSSL
internal import NIOCertificateReloading
internal import X509
internal import SwiftASN1
private import Synchronization

/// Gives the listener's TLS handshakes the certificate and key of the latest reload: the
/// listener is bound once, but each new connection presents what ``TLSMaterial/current`` holds.
struct ListenerCertificateReloader: CertificateReloader {
  let material: TLSMaterial

  var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride {
    let snapshot = self.material.current
    var override = NIOSSLContextConfigurationOverride()
    override.certificateChain = snapshot.nioCertificateChain.map { .certificate($0) }
    override.privateKey = .privateKey(snapshot.nioPrivateKey)
    return override
  }
}

/// The TLS material of one peer: read and checked when the peer is created, and re-read by
/// ``reload()`` (SIGHUP, or a changed file). Handshakes take the ``current`` snapshot, so a
/// reload applies to the next handshake and never drops a link.
final class TLSMaterial: Sendable {
  /// One reading of the files.
  struct Snapshot: Sendable {
    /// Verifies what remotes present: the CA and its revocation lists.
    var verifier: CertificateVerifier
    /// Who is served and dialed, when restricted.
    var allowlist: Allowlist?
    /// This peer's chain, as presented (leaf first; never empty).
    var ownChain: [Certificate]
    /// The same material as PEM, for the transports.
    var trustRootsPEM: String
    var certificatePEM: String
    var privateKeyPEM: String
    /// This peer's chain and key as NIOSSL takes them.
    var nioCertificateChain: [NIOSSLCertificate]
    var nioPrivateKey: NIOSSLPrivateKey

    /// This peer's certificate (the leaf).
    var ownCertificate: Certificate { self.ownChain[0] }

    /// The name in this peer's own certificate.
    var ownIdentity: String { CertificateNames.identity(of: self.ownCertificate) ?? "peer" }
  }

  let config: Peer.Config.MutualTLS
  private let state: Mutex<Snapshot>

  init(_ config: Peer.Config.MutualTLS, check: (Snapshot) throws -> Void = { _ in }) throws {
    self.config = config
    let snapshot = try Self.read(config)
    try check(snapshot)
    self.state = Mutex(snapshot)
  }

  /// The material handshakes use now.
  var current: Snapshot { self.state.withLock { $0 } }

  /// Re-reads every file. On success the new material is used from the next handshake on; on
  /// failure the old stays and the error says what is wrong.
  @discardableResult
  func reload(check: (Snapshot) throws -> Void = { _ in }) throws -> Snapshot {
    let snapshot = try Self.read(self.config)
    try check(snapshot)
    self.state.withLock { $0 = snapshot }
    return snapshot
  }

  /// What identifies the content of each of ``watchedFiles`` now: a change means a reload is
  /// due. Symbolic links are followed — the file reached (its resolved path, device, inode,
  /// size and modification time) and every link on the way — so that a Kubernetes secret
  /// update (the `..data` link swapped to a new folder) or an edit of a link's target is seen.
  var fileStamps: [String] {
    self.watchedFiles.map(FileStamp.of)
  }

  /// Why a verified remote is not authorized by the allowlist, if it is not.
  func refusal(of verified: CertificateVerifier.Verified) -> String? {
    self.current.allowlist?.refusal(of: verified.identity.name, key: verified.key)
  }

  /// The files that ``reload()`` reads, to watch for changes.
  var watchedFiles: [String] {
    var sources = [self.config.trustRoots, self.config.certificateChain, self.config.privateKey]
    if let list = self.config.authorization.revocationList { sources.append(list) }
    var paths = sources.compactMap { source -> String? in
      if case .file(let path) = source.wrapped { return path }
      return nil
    }
    if case .file(let path) = self.config.authorization.allowlist?.wrapped { paths.append(path) }
    return paths
  }

  private static func read(_ config: Peer.Config.MutualTLS) throws -> Snapshot {
    let caPEM = try Self.text(config.trustRoots, what: "CA certificate")
    let certPEM = try Self.text(config.certificateChain, what: "certificate")
    let keyPEM = try Self.text(config.privateKey, what: "private key")

    let trustRoots: [NIOSSLCertificate]
    do {
      trustRoots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
    } catch {
      throw Self.invalid("the CA certificate \(config.trustRoots) is not a PEM certificate", error)
    }
    guard !trustRoots.isEmpty else {
      throw Self.invalid("the CA file \(config.trustRoots) holds no certificate", nil)
    }
    let certificateChain: [NIOSSLCertificate]
    do {
      certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certPEM.utf8))
    } catch {
      throw Self.invalid("the certificate \(config.certificateChain) is not a PEM certificate", error)
    }
    guard !certificateChain.isEmpty else {
      throw Self.invalid("the certificate file \(config.certificateChain) holds no certificate", nil)
    }
    let privateKey: NIOSSLPrivateKey
    do {
      privateKey = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
    } catch {
      throw Self.invalid("the private key \(config.privateKey) is not a PEM private key", error)
    }

    let roots: [Certificate]
    let chain: [Certificate]
    do {
      roots = try trustRoots.map { try Certificate(derEncoded: try $0.toDERBytes()) }
      chain = try certificateChain.map { try Certificate(derEncoded: try $0.toDERBytes()) }
    } catch {
      throw Self.invalid("cannot parse the certificates", error)
    }

    // The key must belong to the certificate: BoringSSL checks it when it builds a context.
    do {
      _ = try NIOSSLContext(
        configuration: .makeServerConfiguration(
          certificateChain: certificateChain.map { .certificate($0) },
          privateKey: .privateKey(privateKey)
        )
      )
    } catch {
      throw Self.invalid(
        "the private key \(config.privateKey) does not belong to the certificate \(config.certificateChain)",
        error
      )
    }

    var revocationLists: [RevocationList] = []
    if let source = config.authorization.revocationList {
      let bytes = try Self.bytes(source, what: "revocation list")
      do {
        revocationLists = try RevocationList.read(bytes, signedBy: roots)
      } catch {
        throw Self.invalid("the revocation list \(source) was not read: \(error)", nil)
      }
    }
    var allowlist: Allowlist?
    switch config.authorization.allowlist?.wrapped {
    case .none: allowlist = nil
    case .entries(let entries): allowlist = entries
    case .file(let path):
      let text = try Self.text(.file(path), what: "allowlist")
      do {
        allowlist = try Allowlist(parsing: text)
      } catch {
        throw PeerAgentError(code: .invalidConfiguration, message: "the allowlist \(path): \(error)")
      }
    }

    return Snapshot(
      verifier: CertificateVerifier(trustRoots: roots, revocationLists: revocationLists),
      allowlist: allowlist,
      ownChain: chain,
      trustRootsPEM: caPEM,
      certificatePEM: certPEM,
      privateKeyPEM: keyPEM,
      nioCertificateChain: certificateChain,
      nioPrivateKey: privateKey
    )
  }

  private static func text(_ source: PEMSource, what: String) throws -> String {
    String(decoding: try Self.bytes(source, what: what), as: UTF8.self)
  }

  private static func bytes(_ source: PEMSource, what: String) throws -> [UInt8] {
    switch source.wrapped {
    case .text(let text):
      return Array(text.utf8)
    case .file(let path):
      guard FileManager.default.fileExists(atPath: path) else {
        throw PeerAgentError(code: .invalidConfiguration, message: "\(what) file not found: \(path)")
      }
      guard let data = FileManager.default.contents(atPath: path) else {
        throw PeerAgentError(code: .invalidConfiguration, message: "cannot read the \(what) file \(path)")
      }
      return Array(data)
    }
  }

  private static func invalid(_ message: String, _ cause: (any Error)?) -> PeerAgentError {
    PeerAgentError(code: .invalidCertificate, message: message, cause: cause)
  }
}

/// The stamp of one watched file (``TLSMaterial/fileStamps``).
enum FileStamp {
  static func of(_ path: String) -> String {
    // The target, through every link.
    var target = "missing"
    if let resolved = realpath(path, nil) {
      defer { free(resolved) }
      let real = String(cString: resolved)
      target = "\(real)|\(Self.stat(real))"
    }
    // The links on the way: their own change times (a swapped link is a new inode).
    var links: [String] = []
    var current = path
    for _ in 0 ..< 16 {
      guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: current) else { break }
      links.append("\(current)->\(destination)|\(Self.stat(current))")
      current = destination.hasPrefix("/") ? destination : (current as NSString).deletingLastPathComponent + "/" + destination
    }
    // Kubernetes swaps a link in the file's folder (`..data`), not the file's own link.
    let folder = (path as NSString).deletingLastPathComponent
    let data = folder + "/..data"
    if let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: data) {
      links.append("..data->\(destination)")
    }
    return ([path, target] + links).joined(separator: " ")
  }

  /// The device, inode, size and modification time of `path` itself (a link is not followed).
  private static func stat(_ path: String) -> String {
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return "unreadable" }
    let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
    let size = (attributes[.size] as? NSNumber)?.intValue ?? -1
    let inode = (attributes[.systemFileNumber] as? NSNumber)?.intValue ?? -1
    let device = (attributes[.systemNumber] as? NSNumber)?.intValue ?? -1
    return "\(device):\(inode):\(size):\(modified)"
  }
}
