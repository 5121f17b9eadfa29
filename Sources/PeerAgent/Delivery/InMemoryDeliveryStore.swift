private import Synchronization

/// A ``DeliveryStore`` in memory: for tests and benchmarks, and for peers that accept losing
/// their unanswered requests (and their de-duplication window) when the process ends.
///
/// The de-duplication window holds at most `capacity` replies, oldest dropped first.
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

    func entry(id: String) -> WindowEntry {
      self.isAccepted ? .accepted : .answered(Answer(id: id, text: self.text, error: self.error))
    }
  }

  private struct State {
    var outgoing: [String: (sequence: Int, record: OutgoingRecord)] = [:]
    var nextSequence = 0
    var replies: [Key: Remembered] = [:]
    /// Keys in the order they were recorded, for eviction; `head` is the oldest live one.
    var order: [Key] = []
    var head = 0
  }

  private let state = Mutex(State())
  private let capacity: Int

  /// Creates an empty store whose window keeps at most `capacity` replies.
  package init(capacity: Int) {
    self.capacity = max(1, capacity)
  }

  package var isDurable: Bool { false }

  package func recordOutgoing(_ record: OutgoingRecord) throws {
    self.state.withLock { state in
      state.nextSequence += 1
      state.outgoing[record.id] = (state.nextSequence, record)
    }
  }

  package func recordAnswer(_ answer: Answer) throws {
    self.state.withLock { $0.outgoing[answer.id]?.record.answer = answer }
  }

  package func removeOutgoing(id: String) throws {
    _ = self.state.withLock { $0.outgoing.removeValue(forKey: id) }
  }

  package func renamePeer(_ peer: String, to name: String) throws {
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
      Remembered(recordedAt: date, text: answer.text, error: answer.error, isAccepted: false),
      of: answer.id,
      from: sender
    )
  }

  private func remember(_ entry: Remembered, of id: String, from sender: String) {
    let capacity = self.capacity
    self.state.withLock { state in
      let key = Key(sender: sender, id: id)
      if state.replies.updateValue(entry, forKey: key) == nil {
        state.order.append(key)
      }
      while state.replies.count > capacity, state.head < state.order.count {
        state.replies.removeValue(forKey: state.order[state.head])
        state.head += 1
      }
      if state.head > 1024, state.head * 2 > state.order.count {
        state.order.removeFirst(state.head)
        state.head = 0
      }
    }
  }

  package func recordAcceptance(of id: String, from sender: String, at date: Double) throws {
    let present = self.state.withLock { $0.replies[Key(sender: sender, id: id)] != nil }
    if present { return }
    self.remember(Remembered(recordedAt: date, text: "", error: nil, isAccepted: true), of: id, from: sender)
  }

  package func pruneReplies(before date: Double, keep: Int) throws {
    self.state.withLock { state in
      while state.head < state.order.count {
        let key = state.order[state.head]
        guard let reply = state.replies[key] else {
          state.head += 1
          continue
        }
        if reply.recordedAt >= date && state.replies.count <= keep { break }
        state.replies.removeValue(forKey: key)
        state.head += 1
      }
    }
  }
}
