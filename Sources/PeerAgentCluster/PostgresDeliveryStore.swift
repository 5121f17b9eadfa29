private import Foundation
internal import Logging
package import PeerAgent
internal import PostgresNIO
private import Synchronization

/// A ``DeliveryStore`` in a PostgreSQL database that the hubs of a cluster share: one outbox
/// table and one de-duplication window for all of them.
///
/// - The **outbox** holds every hub's unanswered requests, each with its `origin` (the hub
///   whose caller waits for the reply) and its `peer` (the agent it is for). The hub that holds
///   the agent's lease delivers it (``ClusterHub`` claims it), writes the reply into the row,
///   and the origin takes it from there: the table is the source of truth, `NOTIFY` only wakes
///   the hubs that should look.
/// - The **window** is keyed by the agent's verified name and the request id: a request an
///   agent sends again after failing over to another hub is answered from it, not handled again.
///
/// Writes are applied in the order they are made, by one ``PostgresWriter``, which commits
/// whatever is pending in one transaction (group commit). Reads run beside it on the client's
/// pool.
package final class PostgresDeliveryStore: DeliveryStore {
  /// The hub this store records for: its requests' `origin`.
  package let hub: String
  /// This run of the hub (a new one at every start): an acceptance another hub finds in the
  /// window is in progress only while the run that recorded it is alive.
  package let run = UUID().uuidString
  let client: PostgresClient
  let logger: Logger
  /// Applies the writes, in order; its ``PostgresWriter/run()`` must run while the store is used.
  let writer: PostgresWriter
  private let evictions = Atomic<Int>(0)
  /// This hub's unanswered requests when the store was opened (``unansweredOutgoing()``).
  private let recovered: [OutgoingRecord]

  private init(hub: String, client: PostgresClient, logger: Logger, recovered: [OutgoingRecord]) {
    self.hub = hub
    self.client = client
    self.logger = logger
    self.recovered = recovered
    self.writer = PostgresWriter(hub: hub, run: self.run, client: client, logger: logger)
  }

  /// Creates or migrates the schema, and reads this hub's unanswered requests. `client` must be
  /// running (``PostgresClient/run()``) for as long as the store is used.
  static func open(hub: String, client: PostgresClient, logger: Logger) async throws -> PostgresDeliveryStore {
    try await ClusterSchema.migrate(client, logger: logger)
    var records: [OutgoingRecord] = []
    let rows = try await client.query(
      """
      SELECT id, peer, text, expires_at, answered_by, answered_verified, answer, answer_error, answer_code
      FROM peer_agent_outbox WHERE origin = \(hub) ORDER BY sequence
      """,
      logger: logger
    )
    for try await (id, peer, text, expiresAt, answeredBy, verified, answer, answerError, answerCode) in rows.decode(
      (String, String, String, Double, String?, Bool?, String?, String?, String?).self
    ) {
      var record = OutgoingRecord(id: id, peer: peer, text: text, expiresAt: expiresAt)
      if let answeredBy {
        record.answer = Answer(
          id: id, text: answer ?? "", error: answerError, code: answerCode,
          from: PeerIdentity(name: answeredBy, isVerified: verified ?? false)
        )
      }
      records.append(record)
    }
    return PostgresDeliveryStore(hub: hub, client: client, logger: logger, recovered: records)
  }

  // MARK: - DeliveryStore

  package var isDurable: Bool { true }

  package func recordOutgoing(_ record: OutgoingRecord, then recorded: @escaping @Sendable (Result<Void, any Error>) -> Void) {
    self.writer.enqueue(.outgoing(record), then: recorded)
  }

  package func recordAnswer(_ answer: Answer) {
    self.writer.enqueue(.answer(answer))
  }

  package func removeOutgoing(id: String) {
    self.writer.enqueue(.remove(id))
  }

  package func renamePeer(_ peer: String, to name: String) {
    self.writer.enqueue(.rename(peer, to: name))
  }

  /// This hub's unanswered requests as they were when the store was opened: a peer reads them
  /// once, when it is created, before it writes anything.
  package func unansweredOutgoing() throws -> [OutgoingRecord] {
    self.recovered
  }

  /// What the window holds. A request another hub accepted and is still handling — its run
  /// is alive: a hub draining, whose agent moved on and sent it again here — is waited for
  /// (every 50 ms, as long as that run lives, at most ``acceptanceWait``): its reply is the
  /// answer. Only an acceptance whose hub died (or this hub's own, from an earlier run) is
  /// ``WindowEntry/accepted``: at most once, its outcome unknown.
  package func windowEntry(for id: String, from sender: String) async throws -> WindowEntry? {
    let started = ContinuousClock.now
    while true {
      let rows = try await self.client.query(
        """
        SELECT w.text, w.error, w.pending,
          (w.accepted_by IS NOT NULL AND w.accepted_by <> \(self.hub) AND h.run = w.accepted_run AND h.expires_at > now())
        FROM peer_agent_window w LEFT JOIN peer_agent_hubs h ON h.hub = w.accepted_by
        WHERE w.sender = \(sender) AND w.id = \(id)
        """,
        logger: self.logger
      )
      var entry: (text: String, error: String?, pending: Bool, inProgress: Bool?)?
      for try await row in rows.decode((String, String?, Bool, Bool?).self) { entry = row }
      guard let entry else { return nil }
      if !entry.pending { return .answered(Answer(id: id, text: entry.text, error: entry.error)) }
      guard entry.inProgress == true, ContinuousClock.now - started < Self.acceptanceWait else { return .accepted }
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  /// The longest a repeat waits for another hub's reply to the same request.
  static let acceptanceWait: Duration = .seconds(60)

  package func recordReply(_ answer: Answer, from sender: String, at date: Double) async throws {
    try await self.writer.write(.reply(sender: sender, answer: answer, date: date))
  }

  package func recordAcceptance(of id: String, from sender: String, at date: Double) async throws {
    _ = try await self.claimAcceptance(of: id, from: sender, at: date)
  }

  /// Inserts the acceptance unless the window holds the request: the insert waits for a hub
  /// that is inserting the same key in a transaction not yet committed, so of two hubs that
  /// both found nothing in the window, exactly one records it.
  package func claimAcceptance(of id: String, from sender: String, at date: Double) async throws -> Bool {
    try await self.writer.write(.acceptance(sender: sender, id: id, date: date))
  }

  package var windowEvictions: Int { self.evictions.load(ordering: .relaxed) }

  package var failedWrites: Int { self.writer.failedWrites }

  package func pruneReplies(before date: Double, bounds: WindowBounds) async throws {
    let cost = "(\(WindowBounds.entryOverhead) + octet_length(id) + octet_length(text) + coalesce(octet_length(error), 0))"
    let perSender = bounds.bytesPerSender
    let count = bounds.count
    let evicted: Int = try await self.client.withTransaction(logger: self.logger) { connection in
      try await connection.query("DELETE FROM peer_agent_window WHERE recorded_at < \(date)", logger: self.logger)
      var evicted = 0
      // Each sender over its share loses its own oldest; then the oldest beyond the count.
      let rows = try await connection.query(
        PostgresQuery(
          unsafeSQL: """
            WITH held AS (
              SELECT sender, id, SUM(\(cost)) OVER (PARTITION BY sender ORDER BY recorded_at DESC, id DESC) AS bytes,
                ROW_NUMBER() OVER (ORDER BY recorded_at DESC, id DESC) AS place
              FROM peer_agent_window
            ), gone AS (
              DELETE FROM peer_agent_window w USING held
              WHERE w.sender = held.sender AND w.id = held.id AND (held.bytes > $1 OR held.place > $2)
              RETURNING 1
            )
            SELECT COUNT(*)::bigint FROM gone
            """,
          binds: {
            var binds = PostgresBindings()
            binds.append(Int64(perSender))
            binds.append(Int64(count))
            return binds
          }()
        ),
        logger: self.logger
      )
      for try await removed in rows.decode(Int64.self) { evicted += Int(removed) }
      // While the whole window is over its bytes, the sender holding the most loses its
      // oldest tenth.
      for _ in 0 ..< 1000 {
        var total: Int64 = 0
        for try await bytes in try await connection.query(
          PostgresQuery(unsafeSQL: "SELECT coalesce(SUM(\(cost)), 0)::bigint FROM peer_agent_window"),
          logger: self.logger
        ).decode(Int64.self) { total = bytes }
        guard total > Int64(bounds.bytes) else { break }
        var largest: (String, Int64)?
        for try await row in try await connection.query(
          PostgresQuery(unsafeSQL: "SELECT sender, COUNT(*)::bigint FROM peer_agent_window GROUP BY sender ORDER BY SUM(\(cost)) DESC LIMIT 1"),
          logger: self.logger
        ).decode((String, Int64).self) { largest = row }
        guard let (sender, held) = largest else { break }
        let excess = max(1, held / 10)
        let gone = try await connection.query(
          """
          WITH gone AS (
            DELETE FROM peer_agent_window WHERE sender = \(sender) AND id IN (
              SELECT id FROM peer_agent_window WHERE sender = \(sender) ORDER BY recorded_at, id LIMIT \(excess)
            ) RETURNING 1
          ) SELECT COUNT(*)::bigint FROM gone
          """,
          logger: self.logger
        )
        for try await removed in gone.decode(Int64.self) { evicted += Int(removed) }
      }
      return evicted
    }
    self.evictions.add(evicted, ordering: .relaxed)
  }
}
