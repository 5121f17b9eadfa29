private import Synchronization

private import DequeModule

/// A ``DeliveryStore`` in memory: for tests and benchmarks, and for peers that accept losing
/// their unanswered requests (and their de-duplication window) when the process ends.
///
/// The de-duplication window keeps within its ``WindowBounds``: per sender, oldest dropped
/// first; when the whole window is full, from the sender holding the most.
package final class InMemoryDeliveryStore: DeliveryStore {
  private struct Key: Hashable {
    var sender: String
    var id: String
  }

  /// One window entry: only what a repeat is answered with (the id is in the key), as the
  /// SQLite store keeps it — the window may hold a million.
  private struct Remembered {
    var recordedAt: Double
    var text: String
    var error: String?
    var isAccepted: Bool
    var cost: Int

    init(recordedAt: Double, id: String, text: String, error: String?, isAccepted: Bool) {
      self.recordedAt = recordedAt
      self.text = text
      self.error = error
      self.isAccepted = isAccepted
      self.cost = WindowBounds.cost(id: id, text: text, error: error)
    }

    func entry(id: String) -> WindowEntry {
      self.isAccepted ? .accepted : .answered(Answer(id: id, text: self.text, error: self.error))
    }
  }

  /// One sender's part of the window: its ids in the order they were recorded, and its bytes.
  private struct SenderWindow {
    var order: Deque<String> = []
    var bytes = 0
  }

  private struct State {
    var outgoing: [String: (sequence: Int, record: OutgoingRecord)] = [:]
    var nextSequence = 0
    var replies: [Key: Remembered] = [:]
    var senders: [String: SenderWindow] = [:]
    var bytes = 0
    var evictions = 0

    /// Forgets the oldest entry of `sender`. In place: a copy of the sender's order, even a
    /// binding of it, would make every eviction copy the whole order.
    mutating func evictOldest(of sender: String) {
      guard self.senders[sender] != nil else { return }
      while let id = self.senders[sender]!.order.popFirst() {
        if let removed = self.replies.removeValue(forKey: Key(sender: sender, id: id)) {
          self.senders[sender]!.bytes -= removed.cost
          self.bytes -= removed.cost
          break
        }
      }
      if self.senders[sender]!.order.isEmpty { self.senders[sender] = nil }
    }

    /// The sender holding the most: by bytes, or by entries.
    func largestSender(byCount: Bool) -> String? {
      self.senders.max { a, b in
        byCount ? a.value.order.count < b.value.order.count : a.value.bytes < b.value.bytes
      }?.key
    }

    /// Drops entries until the window is within `bounds`, `sender`'s own share first.
    mutating func enforce(_ bounds: WindowBounds, after sender: String) {
      while let bytes = self.senders[sender]?.bytes, bytes > bounds.bytesPerSender, self.senders[sender]!.order.count > 1 {
        self.evictOldest(of: sender)
        self.evictions += 1
      }
      while self.replies.count > bounds.count || self.bytes > bounds.bytes {
        guard let largest = self.largestSender(byCount: self.replies.count > bounds.count) else { break }
        self.evictOldest(of: largest)
        self.evictions += 1
      }
    }
  }

  private let state = Mutex(State())
  private let bounds: WindowBounds

  /// Creates an empty store whose window keeps within `bounds`.
  package init(bounds: WindowBounds) {
    self.bounds = bounds
  }

  /// Creates an empty store whose window keeps at most `capacity` replies.
  package convenience init(capacity: Int) {
    self.init(bounds: WindowBounds(count: capacity))
  }

  package var isDurable: Bool { false }

  package var windowEvictions: Int { self.state.withLock { $0.evictions } }

  package func recordOutgoing(
    _ record: OutgoingRecord,
    then recorded: @escaping @Sendable (Result<Void, any Error>) -> Void
  ) {
    self.state.withLock { state in
      state.nextSequence += 1
      state.outgoing[record.id] = (state.nextSequence, record)
    }
    recorded(.success(()))
  }

  package var failedWrites: Int { 0 }

  package func recordAnswer(_ answer: Answer) {
    self.state.withLock { $0.outgoing[answer.id]?.record.answer = answer }
  }

  package func removeOutgoing(id: String) {
    _ = self.state.withLock { $0.outgoing.removeValue(forKey: id) }
  }

  package func renamePeer(_ peer: String, to name: String) {
    self.state.withLock { state in
      for (id, entry) in state.outgoing where entry.record.peer == peer {
        state.outgoing[id]?.record.peer = name
      }
    }
  }

  package func unansweredOutgoing() throws -> [OutgoingRecord] {
    self.state.withLock { state in
      state.outgoing.values.sorted { $0.sequence < $1.sequence }.map(\.record)
    }
  }

  package func windowEntry(for id: String, from sender: String) throws -> WindowEntry? {
    self.state.withLock { $0.replies[Key(sender: sender, id: id)]?.entry(id: id) }
  }

  package func recordReply(_ answer: Answer, from sender: String, at date: Double) throws {
    self.remember(
      Remembered(recordedAt: date, id: answer.id, text: answer.text, error: answer.error, isAccepted: false),
      of: answer.id,
      from: sender
    )
  }

  private func remember(_ entry: Remembered, of id: String, from sender: String) {
    let bounds = self.bounds
    self.state.withLock { state in
      let key = Key(sender: sender, id: id)
      let previous = state.replies.updateValue(entry, forKey: key)
      let added = entry.cost - (previous?.cost ?? 0)
      state.senders[sender, default: SenderWindow()].bytes += added
      state.bytes += added
      if previous == nil {
        state.senders[sender]!.order.append(id)
      }
      state.enforce(bounds, after: sender)
    }
  }

  package func recordAcceptance(of id: String, from sender: String, at date: Double) throws {
    let present = self.state.withLock { $0.replies[Key(sender: sender, id: id)] != nil }
    if present { return }
    self.remember(
      Remembered(recordedAt: date, id: id, text: "", error: nil, isAccepted: true),
      of: id,
      from: sender
    )
  }

  package func pruneReplies(before date: Double, bounds: WindowBounds) throws {
    self.state.withLock { state in
      for sender in Array(state.senders.keys) {
        while let id = state.senders[sender]?.order.first {
          guard let reply = state.replies[Key(sender: sender, id: id)] else {
            state.senders[sender]!.order.removeFirst()
            continue
          }
          if reply.recordedAt >= date { break }
          state.evictOldest(of: sender)
        }
        if state.senders[sender]?.order.isEmpty == true { state.senders[sender] = nil }
      }
      for sender in Array(state.senders.keys) { state.enforce(bounds, after: sender) }
    }
  }
}
