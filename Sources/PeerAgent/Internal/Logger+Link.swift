internal import Logging

extension Logger {
  /// This logger, with the remote of a link in its metadata: `link` (the identity) and, in
  /// plaintext, `link.verified`.
  func forLink(_ identity: PeerIdentity) -> Logger {
    var logger = self
    logger[metadataKey: "link"] = "\(identity.name.logSafe)"
    if !identity.isVerified { logger[metadataKey: "link.verified"] = "false (plaintext: named by address)" }
    return logger
  }
}
