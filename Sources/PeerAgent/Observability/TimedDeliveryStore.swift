/// A ``DeliveryStore`` that times every write of the store it wraps into
/// `peer_agent_store_write_seconds`. Reads are not timed.
struct TimedDeliveryStore: DeliveryStore {
  let store: any DeliveryStore
  let metrics: PeerMetrics

  var isDurable: Bool { self.store.isDurable }
  var windowEvictions: Int { self.store.windowEvictions }

  private func timed<T>(_ body: () throws -> T) rethrows -> T {
    let start = ContinuousClock.now
    defer { self.metrics.storeWrite(.now - start) }
    return try body()
  }

  func recordOutgoing(_ record: OutgoingRecord) throws { try self.timed { try self.store.recordOutgoing(record) } }
  func recordAnswer(_ answer: Answer) throws { try self.timed { try self.store.recordAnswer(answer) } }
  func removeOutgoing(id: String) throws { try self.timed { try self.store.removeOutgoing(id: id) } }
  func renamePeer(_ peer: String, to name: String) throws { try self.timed { try self.store.renamePeer(peer, to: name) } }
  func unansweredOutgoing() throws -> [OutgoingRecord] { try self.store.unansweredOutgoing() }
  func windowEntry(for id: String, from sender: String) throws -> WindowEntry? {
    try self.store.windowEntry(for: id, from: sender)
  }
  func recordReply(_ answer: Answer, from sender: String, at date: Double) throws {
    try self.timed { try self.store.recordReply(answer, from: sender, at: date) }
  }
  func recordAcceptance(of id: String, from sender: String, at date: Double) throws {
    try self.timed { try self.store.recordAcceptance(of: id, from: sender, at: date) }
  }
  func pruneReplies(before date: Double, bounds: WindowBounds) throws {
    try self.timed { try self.store.pruneReplies(before: date, bounds: bounds) }
  }
}
