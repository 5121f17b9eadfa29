private import Foundation
private import GRDB
private import Synchronization
#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// A ``DeliveryStore`` in an embedded SQLite database (GRDB), in a folder of its own.
///
/// The database runs in WAL mode with `synchronous = NORMAL`: every transaction's effect is in
/// the operating system's hands when it commits, so `kill -9` loses nothing; a power failure
/// may lose the last transactions (`synchronous = FULL` would fsync each one, at a large cost).
///
/// Writes are group-committed off the caller's thread (``GroupCommit``): what is pending when
/// the writer is free shares one transaction. Reads run beside the writer (a pool of readers,
/// which WAL allows), so a request's window lookup never waits for a batch to commit.
///
/// The folder is locked (`flock` on `lock`) for as long as the store is open, so that two
/// processes never share one peer's state.
package final class SQLiteDeliveryStore: DeliveryStore {
  private let database: DatabasePool
  private let writes: GroupCommit
  /// The keys the window may hold: most requests are not looked up on disk.
  private let filter = WindowFilter()
  private let lockDescriptor: Int32
  /// Whether ``close()`` ran: the database is closed and the folder unlocked.
  private let closed = Mutex(false)
  /// Replies forgotten to keep within the window's bounds.
  private let evictions = Atomic<Int>(0)

  /// Opens (creating if needed) the store in `directory`.
  ///
  /// - Throws: ``PeerAgentError`` (`invalidConfiguration`) when the folder cannot be made or
  ///   locked, or the database cannot be opened.
  package init(directory: String) throws {
    do {
      try PrivateFiles.makeFolder(directory)
    } catch {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "cannot create the state folder '\(directory)': \(error.localizedDescription)",
        cause: error
      )
    }
    let lockPath = (directory as NSString).appendingPathComponent("lock")
    let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "cannot open '\(lockPath)': \(String(cString: strerror(errno)))"
      )
    }
    // A lock just released can still be held for a moment: by the previous process while it
    // exits, or by a child this process is spawning, which shares the descriptor from fork to
    // exec (O_CLOEXEC closes it only then). Wait half a second before calling it in use.
    var locked = flock(descriptor, LOCK_EX | LOCK_NB) == 0
    for _ in 0 ..< 50 where !locked {
      usleep(10_000)
      locked = flock(descriptor, LOCK_EX | LOCK_NB) == 0
    }
    guard locked else {
      closeDescriptor(descriptor)
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "the state folder '\(directory)' is in use by another peer-agent process: give each peer its own --state-dir"
      )
    }
    self.lockDescriptor = descriptor

    do {
      var configuration = Configuration()
      configuration.label = "peer-agent.delivery"
      configuration.prepareDatabase { db in
        try db.execute(sql: "PRAGMA synchronous = NORMAL")
      }
      let path = (directory as NSString).appendingPathComponent("delivery.sqlite")
      // Owner-only from the start; SQLite gives its -wal and -shm files the same mode.
      try PrivateFiles.create(path, mode: 0o600)
      // A pool opens the database in WAL mode.
      let database = try DatabasePool(path: path, configuration: configuration)
      try Self.migrator.migrate(database)
      self.database = database
      self.writes = GroupCommit(database: database)
      let filter = self.filter
      try database.read { db in
        let keys = try Row.fetchCursor(db, sql: "SELECT sender, id FROM replies")
        while let key = try keys.next() { filter.insert(sender: key["sender"], id: key["id"]) }
      }
    } catch {
      closeDescriptor(descriptor)
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "cannot open the delivery database in '\(directory)': \(error)",
        cause: error
      )
    }
  }

  deinit {
    try? self.close()
  }

  /// Closes the database and unlocks the folder, so that another store (another process, or
  /// a test's "next life") may open it. Idempotent; the store is unusable afterwards. Also
  /// done when the store is released, but a release is not promised at any exact moment.
  package func close() throws {
    let first = self.closed.withLock { closed in
      defer { closed = true }
      return !closed
    }
    guard first else { return }
    defer { closeDescriptor(self.lockDescriptor) }
    self.writes.close()
    try self.database.close()
  }

  private static var migrator: DatabaseMigrator {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("v1") { db in
      try db.execute(
        sql: """
          CREATE TABLE outgoing (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            peer TEXT NOT NULL,
            text TEXT NOT NULL,
            expires_at REAL NOT NULL
          );
          CREATE TABLE replies (
            sender TEXT NOT NULL,
            id TEXT NOT NULL,
            text TEXT NOT NULL,
            error TEXT,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (sender, id)
          ) WITHOUT ROWID;
          CREATE INDEX replies_by_age ON replies (recorded_at);
          """
      )
    }
    migrator.registerMigration("v2: answers kept until taken") { db in
      try db.execute(
        sql: """
          ALTER TABLE outgoing ADD COLUMN answered_by TEXT;
          ALTER TABLE outgoing ADD COLUMN answered_verified INTEGER;
          ALTER TABLE outgoing ADD COLUMN answer TEXT;
          ALTER TABLE outgoing ADD COLUMN answer_error TEXT;
          """
      )
    }
    migrator.registerMigration("v3: at-most-once acceptances, error codes") { db in
      try db.execute(
        sql: """
          ALTER TABLE replies ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
          ALTER TABLE outgoing ADD COLUMN answer_code TEXT;
          """
      )
    }
    return migrator
  }

  package var isDurable: Bool { true }

  package func recordOutgoing(
    _ record: OutgoingRecord,
    then recorded: @escaping @Sendable (Result<Void, any Error>) -> Void
  ) {
    self.writes.enqueue(
      { db in
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO outgoing (id, peer, text, expires_at) VALUES (?, ?, ?, ?)")
          .execute(arguments: [record.id, record.peer, record.text, record.expiresAt])
      },
      then: recorded
    )
  }

  package func recordAnswer(_ answer: Answer) {
    self.writes.enqueue { db in
      try db.cachedStatement(
        sql: """
          UPDATE outgoing SET answered_by = ?, answered_verified = ?, answer = ?, answer_error = ?, answer_code = ?
          WHERE id = ?
          """
      ).execute(
        arguments: [
          answer.from?.name ?? "", answer.from?.isVerified ?? false, answer.text, answer.error, answer.code, answer.id,
        ]
      )
    }
  }

  package func removeOutgoing(id: String) {
    self.writes.enqueue { db in
      try db.cachedStatement(sql: "DELETE FROM outgoing WHERE id = ?").execute(arguments: [id])
    }
  }

  package func renamePeer(_ peer: String, to name: String) {
    self.writes.enqueue { db in
      try db.execute(sql: "UPDATE outgoing SET peer = ? WHERE peer = ?", arguments: [name, peer])
    }
  }

  package var failedWrites: Int { self.writes.failedWrites }

  /// Transactions committed since the store opened (tests: writes share them).
  package var committedBatches: Int { self.writes.committedBatches }

  package func unansweredOutgoing() throws -> [OutgoingRecord] {
    // What was queued before is on disk first.
    self.writes.flush()
    return try self.database.read { db in
      try Row.fetchAll(db, sql: "SELECT * FROM outgoing ORDER BY sequence").map { row in
        var record = OutgoingRecord(id: row["id"], peer: row["peer"], text: row["text"], expiresAt: row["expires_at"])
        if let from: String = row["answered_by"] {
          record.answer = Answer(
            id: record.id,
            text: row["answer"] ?? "",
            error: row["answer_error"],
            code: row["answer_code"],
            from: PeerIdentity(name: from, isVerified: row["answered_verified"] ?? false)
          )
        }
        return record
      }
    }
  }

  package func windowEntry(for id: String, from sender: String) throws -> WindowEntry? {
    guard self.filter.mayContain(sender: sender, id: id) else { return nil }
    return try self.database.read { db in
      try Row.fetchOne(
        db.cachedStatement(sql: "SELECT text, error, pending FROM replies WHERE sender = ? AND id = ?"),
        arguments: [sender, id]
      ).map { row -> WindowEntry in
        if row["pending"] { return .accepted }
        return .answered(Answer(id: id, text: row["text"], error: row["error"]))
      }
    }
  }

  package func recordReply(_ answer: Answer, from sender: String, at date: Double) async throws {
    self.filter.insert(sender: sender, id: answer.id)
    try await self.writes.write { db in
      try db.cachedStatement(
        sql: "INSERT OR REPLACE INTO replies (sender, id, text, error, recorded_at, pending) VALUES (?, ?, ?, ?, ?, 0)"
      ).execute(arguments: [sender, answer.id, answer.text, answer.error, date])
    }
  }

  package func recordAcceptance(of id: String, from sender: String, at date: Double) async throws {
    self.filter.insert(sender: sender, id: id)
    try await self.writes.write { db in
      try db.cachedStatement(
        sql: "INSERT OR IGNORE INTO replies (sender, id, text, error, recorded_at, pending) VALUES (?, ?, '', NULL, ?, 1)"
      ).execute(arguments: [sender, id, date])
    }
  }

  package var windowEvictions: Int { self.evictions.load(ordering: .relaxed) }

  package func pruneReplies(before date: Double, bounds: WindowBounds) async throws {
    let cost = "(\(WindowBounds.entryOverhead) + length(CAST(id AS BLOB)) + length(CAST(text AS BLOB)) + ifnull(length(CAST(error AS BLOB)), 0))"
    // Its own transaction on the writer queue, between two batches.
    let evicted = try await self.database.write { db -> Int in
      try db.execute(sql: "DELETE FROM replies WHERE recorded_at < ?", arguments: [date])
      // Each sender over its share loses its own oldest.
      try db.execute(
        sql: """
          DELETE FROM replies WHERE (sender, id) IN (
            SELECT sender, id FROM (
              SELECT sender, id, SUM(\(cost)) OVER (
                PARTITION BY sender ORDER BY recorded_at DESC, id DESC
              ) AS held FROM replies
            ) WHERE held > ?
          )
          """,
        arguments: [bounds.bytesPerSender]
      )
      var evicted = db.changesCount
      // While the whole window is over, the sender holding the most loses its oldest tenth.
      for _ in 0 ..< 1000 {
        let totals = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, ifnull(SUM(\(cost)), 0) AS bytes FROM replies")
        let count: Int = totals?["n"] ?? 0
        let bytes: Int = totals?["bytes"] ?? 0
        guard count > bounds.count || bytes > bounds.bytes else { break }
        let byCount = count > bounds.count
        guard
          let largest = try Row.fetchOne(
            db,
            sql: "SELECT sender, COUNT(*) AS n FROM replies GROUP BY sender ORDER BY \(byCount ? "COUNT(*)" : "SUM(\(cost))") DESC LIMIT 1"
          )
        else { break }
        let sender: String = largest["sender"]
        let held: Int = largest["n"]
        let excess = byCount ? count - bounds.count : max(1, held / 10)
        try db.execute(
          sql: """
            DELETE FROM replies WHERE sender = ? AND id IN (
              SELECT id FROM replies WHERE sender = ? ORDER BY recorded_at, id LIMIT ?
            )
            """,
          arguments: [sender, sender, max(1, min(excess, held))]
        )
        evicted += db.changesCount
      }
      return evicted
    }
    self.evictions.add(evicted, ordering: .relaxed)
    self.filter.pruned(before: date)
  }
}

/// `close(2)`, by a name a type with a `close()` method of its own can call.
private func closeDescriptor(_ descriptor: Int32) {
  _ = close(descriptor)
}
