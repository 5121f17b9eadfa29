internal import NIOCore
private import Synchronization

/// What the custom verification callback found, handed to the channel handler that reports
/// the refusal.
///
/// The listener's verification callback is shared by every connection and is not told which
/// one it serves: the verdict (swift-certificates' `Verifier` is async) is parked per event loop
/// just before the handshake's promise fails, and taken by the first refusal reported on that
/// loop. Two handshakes failing on one loop at the same instant could swap their reasons in the
/// log; neither is ever accepted.
final class VerificationFailures: Sendable {
  private let reasons = Mutex<[ObjectIdentifier: String]>([:])

  init() {}

  func park(_ reason: String, on eventLoop: any EventLoop) {
    self.reasons.withLock { $0[ObjectIdentifier(eventLoop)] = reason }
  }

  func take(on eventLoop: any EventLoop) -> String? {
    self.reasons.withLock { $0.removeValue(forKey: ObjectIdentifier(eventLoop)) }
  }
}
