/// What a receiver's de-duplication window holds for one request id.
package enum WindowEntry: Sendable, Hashable {
  /// Accepted and handed to the handler, but no reply recorded (at-most-once): after a crash,
  /// whether the handler finished is unknown.
  case accepted
  /// The reply given.
  case answered(Answer)
}
