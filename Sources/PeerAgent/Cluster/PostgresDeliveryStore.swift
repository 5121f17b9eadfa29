private import Foundation
internal import Logging
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
/// Writes are applied in the order they are made, by one writer (``runWriter()``), which
/// commits whatever is pending in one transaction (group commit). Reads run beside it on the
/// client's pool.
package final class PostgresDeliveryStore: DeliveryStore {
  /// The hub this store records for: its requests' `origin`.
  package let hub: String
  /// This run of the hub (a new one at every start): an acceptance another hub finds in the
  /// window is in progress only while the run that recorded it is alive.
  package let run = UUID().uuidString
  let client: PostgresClient
  private let logger: Logger
  private let pending = Mutex(Pending())
  private let wake = Doorbell()
  private let failures = Atomic<Int>(0)
  private let evictions = Atomic<Int>(0)
  private let batches = Atomic<Int>(0)
  /// This hub's unanswered requests when the store was opened (``unansweredOutgoing()``).
  private let recovered: [OutgoingRecord]

  /// The most writes in one transaction (a few statements over arrays: a large batch costs
  /// little more than a small one).
  static let maximumBatch = 4096

  /// One write and whom to tell how it went: `true`, except for an acceptance another hub
  /// recorded first.
  struct Write: Sendable {
    let operation: PostgresWriteBatch.Operation
    let done: (@Sendable (Result<Bool, any Error>) -> Void)?
  }

  private struct Pending {
    var writes: [Write] = []
    var closed = false
    /// Callers of ``flush()``, woken once everything before them is written.
    var flushed: [(count: Int, promise: Promise<Void>)] = []
    var submitted = 0
    var written = 0
  }

  private init(hub: String, client: PostgresClient, logger: Logger, recovered: [OutgoingRecord]) {
    self.hub = hub
    self.client = client
    self.logger = logger
    self.recovered = recovered
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

  // MARK: - The writer

  /// Applies the writes in order, in batches, until ``close()`` and every write before it is
  /// done; then returns. A batch that fails is retried one write per transaction, so that only
  /// the failing write reports its error.
  package func runWriter() async {
    while true {
      let (batch, closed): ([Write], Bool) = self.pending.withLock { pending in
        let count = min(pending.writes.count, Self.maximumBatch)
        let batch = Array(pending.writes.prefix(count))
        pending.writes.removeFirst(count)
        return (batch, pending.closed)
      }
      if batch.isEmpty {
        if closed { return }
        await self.wake.wait(atMost: .seconds(1))
        continue
      }
      await self.commit(batch)
      let woken: [Promise<Void>] = self.pending.withLock { pending in
        pending.written += batch.count
        let done = pending.flushed.filter { $0.count <= pending.written }.map(\.promise)
        pending.flushed.removeAll { $0.count <= pending.written }
        return done
      }
      for promise in woken { promise.complete(.success(())) }
    }
  }

  /// Commits `batch` in one transaction, as a few statements over arrays
  /// (``PostgresWriteBatch``) rather than one round trip per write.
  private func commit(_ batch: [Write]) async {
    do {
      let results = try await self.client.withTransaction(logger: self.logger) { connection in
        try await PostgresWriteBatch(hub: self.hub, run: self.run, writes: batch.map(\.operation)).apply(on: connection, logger: self.logger)
      }
      self.batches.add(1, ordering: .relaxed)
      for (write, result) in zip(batch, results) { write.done?(.success(result)) }
    } catch {
      guard batch.count > 1 else {
        self.failed(batch[0], error)
        return
      }
      // One of them failed, and the transaction rolled back: each on its own, so that only
      // the failing one fails.
      for write in batch {
        do {
          let results = try await self.client.withTransaction(logger: self.logger) { connection in
            try await PostgresWriteBatch(hub: self.hub, run: self.run, writes: [write.operation]).apply(on: connection, logger: self.logger)
          }
          write.done?(.success(results[0]))
        } catch {
          self.failed(write, error)
        }
      }
    }
  }

  private func failed(_ write: Write, _ error: any Error) {
    self.failures.add(1, ordering: .relaxed)
    self.logger.error("a write to the cluster database failed", metadata: ["error": "\(String(reflecting: error))"])
    write.done?(.failure(error))
  }

  private func submit(_ write: Write) {
    let accepted = self.pending.withLock { pending -> Bool in
      guard !pending.closed else { return false }
      pending.writes.append(write)
      pending.submitted += 1
      return true
    }
    guard accepted else {
      write.done?(.failure(Closed()))
      return
    }
    self.wake.ring()
  }

  private func enqueue(_ operation: PostgresWriteBatch.Operation, then done: (@Sendable (Result<Void, any Error>) -> Void)? = nil) {
    guard let done else {
      self.submit(Write(operation: operation, done: nil))
      return
    }
    self.submit(Write(operation: operation) { (result: Result<Bool, any Error>) in done(result.map { _ in () }) })
  }

  /// Writes `operation` in the next batch and returns once it is committed — also when the
  /// caller's task is cancelled meanwhile (its stream went away): the write is queued and will
  /// be made, so the caller must know how it went (a recorded acceptance or reply decides what
  /// a repeat of the request is answered).
  @discardableResult
  private func write(_ operation: PostgresWriteBatch.Operation) async throws -> Bool {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
      self.submit(Write(operation: operation) { continuation.resume(with: $0) })
    }
  }

  /// Waits until every write submitted so far is done.
  package func flush() async {
    let promise: Promise<Void>? = self.pending.withLock { pending in
      guard pending.written < pending.submitted else { return nil }
      let promise = Promise<Void>()
      pending.flushed.append((pending.submitted, promise))
      return promise
    }
    self.wake.ring()
    try? await promise?.wait()
  }

  /// Writes what is pending and opens the store again, as the hub's next run does: with the
  /// unanswered requests as they are now.
  func flushAndReopen() async throws -> PostgresDeliveryStore {
    await self.flush()
    return try await Self.open(hub: self.hub, client: self.client, logger: self.logger)
  }

  /// Refuses new writes; ``runWriter()`` returns once the pending ones are written.
  package func close() {
    self.pending.withLock { $0.closed = true }
    self.wake.ring()
  }

  /// The store was closed before the write was made.
  struct Closed: Error, CustomStringConvertible {
    var description: String { "the cluster delivery store is closed" }
  }

  // MARK: - DeliveryStore

  package var isDurable: Bool { true }

  package func recordOutgoing(_ record: OutgoingRecord, then recorded: @escaping @Sendable (Result<Void, any Error>) -> Void) {
    self.enqueue(.outgoing(record), then: recorded)
  }

  package func recordAnswer(_ answer: Answer) {
    self.enqueue(.answer(answer))
  }

  package func removeOutgoing(id: String) {
    self.enqueue(.remove(id))
  }

  package func renamePeer(_ peer: String, to name: String) {
    self.enqueue(.rename(peer, to: name))
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
    try await self.write(.reply(sender: sender, answer: answer, date: date))
  }

  package func recordAcceptance(of id: String, from sender: String, at date: Double) async throws {
    try await self.write(.acceptance(sender: sender, id: id, date: date))
  }

  /// Inserts the acceptance unless the window holds the request: the insert waits for a hub
  /// that is inserting the same key in a transaction not yet committed, so of two hubs that
  /// both found nothing in the window, exactly one records it.
  package func claimAcceptance(of id: String, from sender: String, at date: Double) async throws -> Bool {
    try await self.write(.acceptance(sender: sender, id: id, date: date))
  }

  package var windowEvictions: Int { self.evictions.load(ordering: .relaxed) }

  package var failedWrites: Int { self.failures.load(ordering: .relaxed) }

  /// Transactions committed since the store opened.
  package var committedBatches: Int { self.batches.load(ordering: .relaxed) }

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

/// The cluster's tables, created and migrated by PeerAgent itself: each version is applied once,
/// under an advisory lock, so hubs that start together do not race.
enum ClusterSchema {
  /// The migrations, in order; the database records how many it has.
  static let migrations: [String] = [
    """
    CREATE TABLE peer_agent_outbox (
      sequence bigserial NOT NULL,
      id text PRIMARY KEY,
      origin text NOT NULL,
      peer text NOT NULL,
      text text NOT NULL,
      expires_at double precision NOT NULL,
      claimed_by text,
      answered_by text,
      answered_verified boolean,
      answer text,
      answer_error text,
      answer_code text,
      answered_at_hub text
    );
    CREATE INDEX peer_agent_outbox_unanswered ON peer_agent_outbox (peer, sequence) WHERE answered_by IS NULL;
    CREATE INDEX peer_agent_outbox_origin ON peer_agent_outbox (origin, sequence);
    CREATE TABLE peer_agent_window (
      sender text NOT NULL,
      id text NOT NULL,
      text text NOT NULL,
      error text,
      recorded_at double precision NOT NULL,
      pending boolean NOT NULL DEFAULT false,
      accepted_by text,
      accepted_run text,
      PRIMARY KEY (sender, id)
    );
    CREATE INDEX peer_agent_window_age ON peer_agent_window (recorded_at);
    CREATE TABLE peer_agent_leases (
      agent text PRIMARY KEY,
      hub text NOT NULL,
      expires_at timestamptz NOT NULL
    );
    CREATE INDEX peer_agent_leases_hub ON peer_agent_leases (hub);
    CREATE TABLE peer_agent_hubs (
      hub text PRIMARY KEY,
      run text NOT NULL,
      expires_at timestamptz NOT NULL
    );
    """
  ]

  static func migrate(_ client: PostgresClient, logger: Logger) async throws {
    try await client.withTransaction(logger: logger) { connection in
      // One hub at a time: the key is "peer-agent" in ASCII.
      try await connection.query("SELECT pg_advisory_xact_lock(7070065110116)", logger: logger)
      try await connection.query("CREATE TABLE IF NOT EXISTS peer_agent_schema (version integer NOT NULL)", logger: logger)
      var version = 0
      for try await value in try await connection.query("SELECT version FROM peer_agent_schema", logger: logger).decode(Int.self) {
        version = value
      }
      if version > migrations.count {
        throw PeerAgentError(
          code: .invalidConfiguration,
          message: "the cluster database has schema version \(version), newer than this peer-agent knows (\(migrations.count)): upgrade peer-agent"
        )
      }
      for migration in migrations[version...] {
        for statement in migration.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
          try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
      }
      if version == 0 {
        try await connection.query("INSERT INTO peer_agent_schema (version) VALUES (\(migrations.count))", logger: logger)
      } else if version < migrations.count {
        try await connection.query("UPDATE peer_agent_schema SET version = \(migrations.count)", logger: logger)
      }
    }
  }
}
