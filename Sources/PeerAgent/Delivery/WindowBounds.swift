/// How much the de-duplication window may hold: in replies and in bytes, in all and per sender.
///
/// No sender can push out another's replies: a sender over its own share loses its own oldest
/// first, and when the whole window is full the sender holding the most loses its oldest. A
/// sender that keeps within `total / senders` keeps every reply for the retention.
package struct WindowBounds: Sendable, Hashable {
  /// The most replies, all senders together.
  package var count: Int
  /// The most bytes (ids, texts and errors, plus a fixed cost per entry), all senders together.
  package var bytes: Int
  /// The most bytes one sender's replies may hold.
  package var bytesPerSender: Int

  package init(count: Int, bytes: Int = .max, bytesPerSender: Int = .max) {
    self.count = max(1, count)
    self.bytes = max(1, bytes)
    self.bytesPerSender = max(1, bytesPerSender)
  }

  /// What one entry costs: its id, text and error, and the bookkeeping around them.
  static func cost(id: String, text: String, error: String?) -> Int {
    Self.entryOverhead + id.utf8.count + text.utf8.count + (error?.utf8.count ?? 0)
  }

  /// The fixed bytes counted per entry besides its strings (keys, dates, hash table slots).
  package static let entryOverhead = 96
}
