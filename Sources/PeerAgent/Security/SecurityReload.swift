internal import Foundation
internal import Logging
internal import NIOCore
internal import X509

/// Re-reads a peer's TLS files on request (SIGHUP) and when they change, checks them as at
/// start, and swaps them in for the next handshakes; links stay up unless the new material no
/// longer authorizes them.
struct SecurityReload {
  let context: LinkContext

  /// Reloads now, then checks every live connection against the new material. Throws what is
  /// wrong with the new files; the old material stays.
  func reload(reason: String) async throws {
    guard let material = self.context.material, case .mutualTLS(let tls) = self.context.config.security.wrapped else {
      return
    }
    let logger = self.context.logger
    let snapshot: TLSMaterial.Snapshot
    do {
      snapshot = try material.reload(check: StartupChecks(config: self.context.config, tls: tls).check)
    } catch {
      logger.error("TLS reload refused; the previous material stays in use", metadata: ["reason": "\(error)", "trigger": "\(reason)"])
      throw error
    }
    logger.notice(
      "TLS material reloaded",
      metadata: [
        "trigger": "\(reason)",
        "certificate.expires": "\(ISO8601DateFormatter().string(from: snapshot.ownCertificate.notValidAfter))",
        "allowlist": "\(snapshot.allowlist.map { "\($0.entries.count) entries" } ?? "none")",
        "revoked": "\(snapshot.verifier.revocationLists.reduce(0) { $0 + $1.revokedSerials.count })",
      ]
    )
    await self.warn(about: snapshot, within: material.config.expiryWarning)
    await self.reverifyConnections(with: snapshot)
  }

  /// What an operator should know of the material, at start, on every reload and daily: this
  /// peer's certificate expiring within `expiryWarning`, a revocation list past its next
  /// update, and this peer's own chain failing its own CA — peers that trust the same CA will
  /// refuse it (not an error: a deployment may trust another CA than its own issuer).
  func warn(about snapshot: TLSMaterial.Snapshot, within expiryWarning: Duration) async {
    let logger = self.context.logger
    if let warning = StartupChecks.expiryWarning(snapshot, within: expiryWarning) {
      logger.warning("certificate expiry", metadata: ["reason": "\(warning)"])
    }
    for warning in StartupChecks.revocationWarnings(snapshot) {
      logger.warning("stale revocation list", metadata: ["reason": "\(warning)"])
    }
    let role: CertificateVerifier.PresentedBy = self.context.config.listen != nil ? .listener : .dialer
    do {
      _ = try await snapshot.verifier.check(chain: snapshot.ownChain, presentedBy: role)
    } catch {
      logger.warning("this peer's own certificate will be refused by peers that trust the same CA", metadata: ["reason": "\(error)"])
    }
  }

  /// Checks every connection again with `snapshot` — its CAs, revocation lists and allowlist,
  /// and the time — and ends those that no longer pass: a revoked or expired certificate, or a
  /// peer taken off the allowlist, does not keep the connection it opened before, whether it
  /// has a stream open or sits idle between calls.
  ///
  /// Streams held open (``IdentityKeys``) end first, with `permissionDenied` and the reason;
  /// their connections close a moment later, once that status is written. A connection with
  /// no stream open closes at once.
  func reverifyConnections(with snapshot: TLSMaterial.Snapshot) async {
    var endedStreams = Set<String>()
    for connection in self.context.keys.connections {
      let remote = connection.remote
      guard let key = remote.key, !remote.chain.isEmpty else { continue }
      guard let refusal = await snapshot.refusal(ofVerified: remote.chain, key: key, presentedBy: remote.presentedBy) else {
        continue
      }
      if endedStreams.insert("\(remote.identity.name) \(key)").inserted {
        self.reportEnded(remote.identity.name, refusal)
      }
      connection.end(because: refusal.description)
    }
    for entry in self.context.verifiedConnections.all {
      guard let chain = entry.certificates, let leaf = chain.first, let name = CertificateNames.identity(of: leaf) else {
        continue
      }
      let key = KeyFingerprint(of: leaf)
      guard let refusal = await snapshot.refusal(ofVerified: chain, key: key, presentedBy: .dialer) else { continue }
      if endedStreams.contains("\(name) \(key)") {
        entry.channel.eventLoop.scheduleTask(in: Self.statusGrace) { entry.channel.close(promise: nil) }
      } else {
        self.reportEnded(name, refusal)
        entry.channel.close(promise: nil)
      }
    }
  }

  /// How long a connection whose streams were just ended stays open, for their statuses to be
  /// written. New streams on it are refused meanwhile (``LinkContext/authenticate(_:)``).
  static let statusGrace = TimeAmount.milliseconds(500)

  private func reportEnded(_ name: String, _ refusal: TLSMaterial.Snapshot.Refusal) {
    self.context.logger.forLink(.verified(name)).warning(
      "ended a link: no longer authorized",
      metadata: ["reason": "\(refusal)", "event": "refused"]
    )
    self.context.metrics?.refused(refusal.metric)
    self.context.events.emit(.refused(remote: name.logSafe, reason: "no longer authorized: \(refusal)"))
  }

  /// Checks the files every ``Peer/Config/MutualTLS/watchInterval`` and reloads when one
  /// changed, until cancelled.
  func watch() async {
    guard let material = self.context.material else { return }
    await self.warn(about: material.current, within: material.config.expiryWarning)
    guard let interval = material.config.watchInterval else { return }
    var stamps = material.fileStamps
    var lastWarning = ContinuousClock.now
    var lastCheck = ContinuousClock.now
    while !Task.isCancelled {
      try? await Task.sleep(for: interval)
      let now = material.fileStamps
      if now != stamps {
        stamps = now
        try? await self.reload(reason: "a file changed")
      }
      // Once an hour: links whose certificates expired since are ended; the warnings are
      // repeated daily, for peers that run for weeks.
      if ContinuousClock.now - lastCheck > .seconds(3_600) {
        lastCheck = .now
        await self.reverifyConnections(with: material.current)
      }
      if ContinuousClock.now - lastWarning > .seconds(86_400) {
        lastWarning = .now
        await self.warn(about: material.current, within: material.config.expiryWarning)
      }
    }
  }
}
