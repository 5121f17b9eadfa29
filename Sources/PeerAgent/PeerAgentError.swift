/// An error thrown by PeerAgent.
///
/// Every error carries a ``Code`` to switch on, a message written for the person who reads it,
/// and, where there was one, the underlying error that caused it.
///
/// It prints as `code: "message" (cause: "…")`.
public struct PeerAgentError: Error, Hashable, Sendable {
  /// What kind of failure this is.
  public var code: Code
  /// A message for the user: what went wrong and, where it helps, what to do about it.
  public var message: String
  /// The underlying error, if any.
  public var cause: (any Error)?

  /// Creates an error.
  ///
  /// - Parameters:
  ///   - code: What kind of failure this is.
  ///   - message: A message for the user.
  ///   - cause: The underlying error, if any.
  public init(code: Code, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  /// Two errors are equal when their codes and messages are (the causes are not compared).
  public static func == (lhs: Self, rhs: Self) -> Bool {
    lhs.code == rhs.code && lhs.message == rhs.message
  }

  /// Hashes the code and the message, as ``==`` compares them.
  public func hash(into hasher: inout Hasher) {
    hasher.combine(self.code)
    hasher.combine(self.message)
  }
}

extension PeerAgentError {
  /// The kind of a ``PeerAgentError``.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String, Hashable, Sendable {
      case invalidConfiguration
      case invalidCertificate
      case alreadyRunning
      case notRunning
      case shuttingDown
      case unknownPeer
      case ambiguousPeer
      case notConnected
      case disconnected
      case timedOut
      case remoteHandlerFailed
      case connectionRefused
      case storageFailed
      case messageTooLarge
      case outcomeUnknown
      case invalidRequest
    }

    private var value: Value
    private init(_ value: Value) { self.value = value }

    /// The code's name (`timedOut`, `unknownPeer`, …), as events and the command line show it.
    public var description: String { self.value.rawValue }

    /// The configuration is not usable: a bad address, a missing or unreadable file, a missing
    /// option.
    public static var invalidConfiguration: Self { Self(.invalidConfiguration) }
    /// A certificate or key could not be read or does not fit its use.
    public static var invalidCertificate: Self { Self(.invalidCertificate) }
    /// ``Peer/run()`` was called on a peer that is already running or has finished.
    public static var alreadyRunning: Self { Self(.alreadyRunning) }
    /// The peer is not running (yet, or any more).
    public static var notRunning: Self { Self(.notRunning) }
    /// The peer is shutting down and accepts no new requests; or a request was still
    /// unanswered when the shutdown's grace period ended.
    public static var shuttingDown: Self { Self(.shuttingDown) }
    /// No remote peer of that name is connected, and none connected before the deadline.
    public static var unknownPeer: Self { Self(.unknownPeer) }
    /// Several remote peers are connected and the request named none of them.
    public static var ambiguousPeer: Self { Self(.ambiguousPeer) }
    /// No remote peer connected before the request's deadline.
    public static var notConnected: Self { Self(.notConnected) }
    /// The link to the remote peer went down before the reply arrived. No longer thrown by
    /// ``Peer/send(_:to:timeout:)``: a request whose link drops waits for the next one, and
    /// fails only at its deadline (`timedOut`).
    public static var disconnected: Self { Self(.disconnected) }
    /// The reply did not arrive before the request's deadline.
    public static var timedOut: Self { Self(.timedOut) }
    /// The remote peer's handler threw; the message is the remote's description of it.
    public static var remoteHandlerFailed: Self { Self(.remoteHandlerFailed) }
    /// A connection was refused: TLS handshake failure, wrong identity, plaintext against TLS.
    public static var connectionRefused: Self { Self(.connectionRefused) }
    /// The request could not be recorded in the peer's store (a full disk, a broken database),
    /// so it was not accepted.
    public static var storageFailed: Self { Self(.storageFailed) }
    /// The request, encoded, is larger than the maximum message size — this peer's
    /// (``Peer/Config/Transport/maximumMessageBytes``) or the one the remote announced. It was
    /// never sent, and is never resent.
    public static var messageTooLarge: Self { Self(.messageTooLarge) }
    /// The remote accepted the request before a crash and cannot tell whether its handler
    /// finished: with ``Peer/Config/Delivery/Handling/atMostOnce`` it does not run the handler
    /// again. The request may or may not have taken effect.
    public static var outcomeUnknown: Self { Self(.outcomeUnknown) }
    /// The remote refused the request as malformed without handling it: its id is longer
    /// than ``RequestID/maximumLength`` bytes or holds characters other than printable ASCII.
    public static var invalidRequest: Self { Self(.invalidRequest) }
  }
}

extension PeerAgentError: CustomStringConvertible {
  /// The code, the message and the cause, on one line.
  public var description: String {
    if let cause = self.cause {
      return "\(self.code): \"\(self.message)\" (cause: \"\(cause)\")"
    } else {
      return "\(self.code): \"\(self.message)\""
    }
  }
}

extension PeerAgentError {
  /// A request of `bytes` encoded bytes, above `limit`, the most `whose` (e.g. "this peer
  /// sends", "'hub' accepts").
  static func messageTooLarge(bytes: Int, limit: Int, whose: String) -> Self {
    PeerAgentError(
      code: .messageTooLarge,
      message: "the request is \(bytes) bytes encoded, more than the \(limit) bytes \(whose) (--max-message-bytes): not sent"
    )
  }
}
