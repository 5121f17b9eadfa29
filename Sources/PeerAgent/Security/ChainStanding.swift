internal import Foundation
internal import X509

extension TLSMaterial.Snapshot {
  /// How a chain verified earlier — at its connection's handshake, under older material —
  /// stands under this material.
  enum Standing: Equatable {
    /// Every certificate valid now, none revoked, the root still trusted, the identity and
    /// key still allowed.
    case stands
    /// It no longer passes, for this reason.
    case refused(Refusal)
    /// Its root is no longer among the configured CAs (the CA file changed): only a full
    /// verification can tell whether it chains to the new ones.
    case rootReplaced
  }

  /// Why a chain verified earlier no longer passes: a sentence for the user, and whether the
  /// allowlist (rather than the certificates) refused it.
  struct Refusal: Equatable, Sendable, CustomStringConvertible {
    var description: String
    var byAllowlist = false

    /// The label of `peer_agent_refused_connections_total`.
    var metric: PeerMetrics.RefusalReason { self.byAllowlist ? .notAllowed : .certificateRefused }
  }

  /// How `chain` (leaf first, ending with its root) stands at `now`: the part of
  /// ``CertificateVerifier/check(chain:presentedBy:expectedIdentity:now:)`` that can change
  /// with the material or the time. Signatures and the chain's shape do not, so this is cheap
  /// enough to run on every stream a connection opens.
  func standing(of chain: [Certificate], key: KeyFingerprint, now: Date = Date()) -> Standing {
    guard let leaf = chain.first, let root = chain.last else { return .refused(Refusal(description: "no certificate was verified")) }
    let name = CertificateNames.identity(of: leaf) ?? "\(leaf.subject)"
    for (index, certificate) in chain.enumerated() {
      if let problem = PeerAgentPolicy.validityProblem(certificate, now: now) {
        let which = index == 0 ? "certificate '\(name)'" : "CA certificate '\(certificate.subject)'"
        return .refused(Refusal(description: "\(which) \(problem)"))
      }
    }
    for certificate in chain.dropLast() {
      if let list = self.verifier.revocationLists.first(where: { $0.revokes(certificate) }) {
        let which = certificate == leaf ? "certificate '\(name)'" : "intermediate certificate '\(certificate.subject)'"
        return .refused(
          Refusal(description: "\(which) is revoked (serial \(certificate.serialNumber), by the revocation list of '\(list.issuer)')")
        )
      }
    }
    if let refusal = self.allowlist?.refusal(of: name, key: key) {
      return .refused(Refusal(description: refusal, byAllowlist: true))
    }
    return self.verifier.trustRoots.contains(root) ? .stands : .rootReplaced
  }

  /// Why `chain`, verified at its handshake, is no longer authorized by this material, or
  /// `nil` when it still is: ``standing(of:key:now:)``, and a full verification when the CAs
  /// changed.
  func refusal(
    ofVerified chain: [Certificate],
    key: KeyFingerprint,
    presentedBy: CertificateVerifier.PresentedBy,
    now: Date = Date()
  ) async -> Refusal? {
    switch self.standing(of: chain, key: key, now: now) {
    case .stands:
      return nil
    case .refused(let reason):
      return reason
    case .rootReplaced:
      do {
        _ = try await self.verifier.check(chain: chain, presentedBy: presentedBy, now: now)
        return nil
      } catch {
        return Refusal(description: error.description)
      }
    }
  }
}
