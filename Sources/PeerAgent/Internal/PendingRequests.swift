private import Synchronization

/// The body of a reply as it came off the wire.
struct ReplyBody: Sendable, Hashable {
  var id: String
  var text: String
  /// Set when the remote handler failed.
  var error: String?
}

/// The requests one link has sent and not yet seen answered, and the matching of replies to
/// them: by id, or — for a reply without one, from an older peer — in the order they were
/// written, oldest first.
///
/// Every entry has a deadline; ``expire(now:)`` fails the overdue ones, so a caller never
/// hangs. ``close(with:)`` fails everything still waiting and refuses new entries.
final class PendingRequests: Sendable {
  typealias Continuation = CheckedContinuation<ReplyBody, any Error>

  private struct Entry {
    var continuation: Continuation
    var deadline: ContinuousClock.Instant
  }

  private struct State {
    var entries: [String: Entry] = [:]
    /// Ids in the order they were written to the stream; may hold ids already answered
    /// (skipped lazily). Replies without an id answer these in order.
    var order: [String] = []
    var head = 0
    var closedWith: (any Error)?

    mutating func popOldest() -> (String, Entry)? {
      while self.head < self.order.count {
        let id = self.order[self.head]
        self.head += 1
        if let entry = self.entries.removeValue(forKey: id) {
          self.compact()
          return (id, entry)
        }
      }
      self.compact()
      return nil
    }

    mutating func compact() {
      if self.head > 64 && self.head * 2 > self.order.count {
        self.order.removeFirst(self.head)
        self.head = 0
      }
    }
  }

  private let state = Mutex(State())

  init() {}

  /// The number of requests waiting for a reply.
  var count: Int { self.state.withLock { $0.entries.count } }

  /// Registers a request. Returns `false` (and resumes `continuation` with the error) when the
  /// link is closed or the id is already waiting.
  func register(id: String, deadline: ContinuousClock.Instant, continuation: Continuation) -> Bool {
    let refusal: (any Error)? = self.state.withLock { state in
      if let error = state.closedWith { return error }
      if state.entries[id] != nil {
        return PeerAgentError(code: .invalidConfiguration, message: "request id '\(id)' is already waiting")
      }
      state.entries[id] = Entry(continuation: continuation, deadline: deadline)
      return nil
    }
    if let refusal {
      continuation.resume(throwing: refusal)
      return false
    }
    return true
  }

  /// Records that request `id` is being written to the stream now. The wire order, not the
  /// order callers registered in (concurrent callers race), is what a peer answering without
  /// ids follows.
  func markWritten(id: String) {
    self.state.withLock { $0.order.append(id) }
  }

  /// Matches a reply to its request: by id, or the oldest waiting when the reply has no id.
  ///
  /// - Returns: `false` when no request matched (a late or unknown reply).
  @discardableResult
  func resolve(_ reply: ReplyBody) -> Bool {
    let match: (String, Entry)? = self.state.withLock { state in
      if reply.id.isEmpty {
        return state.popOldest()
      } else if let entry = state.entries.removeValue(forKey: reply.id) {
        state.compact()
        return (reply.id, entry)
      } else {
        return nil
      }
    }
    guard let (id, entry) = match else { return false }
    var reply = reply
    reply.id = id
    entry.continuation.resume(returning: reply)
    return true
  }

  /// Fails one request, if it is still waiting.
  func fail(id: String, with error: any Error) {
    let entry = self.state.withLock { $0.entries.removeValue(forKey: id) }
    entry?.continuation.resume(throwing: error)
  }

  /// Fails every request whose deadline is past.
  func expire(now: ContinuousClock.Instant, error: (String) -> any Error) {
    let overdue: [(String, Entry)] = self.state.withLock { state in
      let ids = state.entries.filter { $0.value.deadline <= now }.map(\.key)
      return ids.compactMap { id in state.entries.removeValue(forKey: id).map { (id, $0) } }
    }
    for (id, entry) in overdue {
      entry.continuation.resume(throwing: error(id))
    }
  }

  /// Fails every waiting request with `error` and refuses new ones.
  func close(with error: any Error) {
    let entries: [Entry] = self.state.withLock { state in
      if state.closedWith == nil { state.closedWith = error }
      let entries = Array(state.entries.values)
      state.entries.removeAll()
      state.order.removeAll()
      state.head = 0
      return entries
    }
    for entry in entries {
      entry.continuation.resume(throwing: error)
    }
  }
}
