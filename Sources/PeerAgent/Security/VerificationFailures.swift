internal import NIOCore
private import Synchronization

/// What the custom verification callback found, handed to the channel handler that reports
/// the refusal.
///
/// The listener's verification callback is shared by every connection and is not told which
/// one it serves; it runs synchronously on the connection's event loop, and the handshake
/// fails right after it on that same loop, so the reason is parked per event loop and taken by
/// the first refusal reported there.
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
