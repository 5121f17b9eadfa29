internal import Foundation
internal import X509

/// What must hold of a peer's own TLS material before it starts (and before a reload is taken):
/// each failure says what to fix.
struct StartupChecks {
  let config: Peer.Config
  let tls: Peer.Config.MutualTLS

  func check(_ snapshot: TLSMaterial.Snapshot) throws {
    let certificate = snapshot.ownCertificate
    let identity = snapshot.ownIdentity
    if let name = self.config.name, name != identity {
      throw Self.refuse(
        "the certificate \(self.tls.certificateChain) is for '\(identity.logSafe)', not for --name '\(name)': use the certificate made for '\(name)' (peer-agent certs --names \(name)), or --name \(identity.logSafe)"
      )
    }
    if let usage = try? certificate.extensions.extendedKeyUsage {
      if self.config.listen != nil, !usage.contains(.serverAuth) {
        throw Self.refuse(
          "this peer listens, but its certificate \(self.tls.certificateChain) does not allow serverAuth (extended key usage): dialers will refuse it; issue one with serverAuth"
        )
      }
      if !self.config.connect.isEmpty, !usage.contains(.clientAuth) {
        throw Self.refuse(
          "this peer dials, but its certificate \(self.tls.certificateChain) does not allow clientAuth (extended key usage): listeners will refuse it; issue one with clientAuth"
        )
      }
    }
    if case .file(let path) = self.tls.privateKey.wrapped, let mode = Self.permissions(of: path), mode & 0o077 != 0 {
      throw Self.refuse(
        "the private key \(path) can be read by group or others (mode \(String(format: "%04o", mode))): run chmod 600 \(path)"
      )
    }
  }

  /// A warning when `snapshot`'s certificate expires within `within`, else `nil`.
  static func expiryWarning(_ snapshot: TLSMaterial.Snapshot, within: Duration, now: Date = Date()) -> String? {
    let expiry = snapshot.ownCertificate.notValidAfter
    let left = expiry.timeIntervalSince(now)
    guard left < within.seconds else { return nil }
    let date = ISO8601DateFormatter().string(from: expiry)
    if left <= 0 { return "this peer's certificate expired on \(date): every peer will refuse it" }
    return "this peer's certificate expires on \(date), in \(Int(left / 86_400)) days \(Int(left.truncatingRemainder(dividingBy: 86_400) / 3_600)) hours: renew it (a reload picks the new one up)"
  }

  /// A warning for each revocation list past its `nextUpdate`: it is still applied, but the
  /// CA has most likely issued a newer one.
  static func revocationWarnings(_ snapshot: TLSMaterial.Snapshot, now: Date = Date()) -> [String] {
    snapshot.verifier.revocationLists.compactMap { list in
      guard let next = list.nextUpdate, next < now else { return nil }
      return "the revocation list of '\(list.issuer)' was due to be replaced on \(ISO8601DateFormatter().string(from: next)): fetch the CA's current list"
    }
  }

  /// The permissions of the file `path` names, through any symbolic links (a link's own mode
  /// is always 0777; a Kubernetes secret's files are links to the real ones).
  private static func permissions(of path: String) -> Int? {
    let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil
      ? URL(fileURLWithPath: path).resolvingSymlinksInPath().path
      : path
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: target),
      let mode = attributes[.posixPermissions] as? NSNumber
    else { return nil }
    return mode.intValue & 0o777
  }

  private static func refuse(_ message: String) -> PeerAgentError {
    PeerAgentError(code: .invalidConfiguration, message: message)
  }
}
