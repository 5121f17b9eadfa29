/// A ``DeliveryStore`` that times every awaited write of the store it wraps into
/// `peer_agent_store_write_seconds`: from the call until it is recorded (for a durable store,
/// committed in its batch). Reads, and writes only queued, are not timed.
struct TimedDeliveryStore: DeliveryStore {
  let store: any DeliveryStore
  let metrics: PeerMetrics

  var isDurable: Bool { self.store.isDurable }
  var windowEvictions: Int { self.store.windowEvictions }
  var failedWrites: Int { self.store.failedWrites }

  private func timed(_ body: () async throws -> Void) async rethrows {
    let start = ContinuousClock.now
    defer { self.metrics.storeWrite(.now - start) }
    try await body()
  }

  func recordOutgoing(_ record: OutgoingRecord, then recorded: @escaping @Sendable (Result<Void, any Error>) -> Void) {
    let start = ContinuousClock.now
    self.store.recordOutgoing(record) { result in
      self.metrics.storeWrite(.now - start)
      recorded(result)
    }
  }
  func recordAnswer(_ answer: Answer) { self.store.recordAnswer(answer) }
  func removeOutgoing(id: String) { self.store.removeOutgoing(id: id) }
  func renamePeer(_ peer: String, to name: String) { self.store.renamePeer(peer, to: name) }
  func unansweredOutgoing() throws -> [OutgoingRecord] { try self.store.unansweredOutgoing() }
  func windowEntry(for id: String, from sender: String) async throws -> WindowEntry? {
    try await self.store.windowEntry(for: id, from: sender)
  }
  func recordReply(_ answer: Answer, from sender: String, at date: Double) async throws {
    try await self.timed { try await self.store.recordReply(answer, from: sender, at: date) }
  }
  func recordAcceptance(of id: String, from sender: String, at date: Double) async throws {
    try await self.timed { try await self.store.recordAcceptance(of: id, from: sender, at: date) }
  }
  func claimAcceptance(of id: String, from sender: String, at date: Double) async throws -> Bool {
    let start = ContinuousClock.now
    defer { self.metrics.storeWrite(.now - start) }
    return try await self.store.claimAcceptance(of: id, from: sender, at: date)
  }
  func pruneReplies(before date: Double, bounds: WindowBounds) async throws {
    try await self.timed { try await self.store.pruneReplies(before: date, bounds: bounds) }
  }
}
