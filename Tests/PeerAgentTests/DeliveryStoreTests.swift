import Foundation
import PeerAgentTestSupport
import GRDB
import Logging
import PostgresNIO
import Testing

@testable import PeerAgent
@testable import PeerAgentCluster
@testable import peer_agent

/// The built-in stores, through the same protocol and the same checks: what one promises, the
/// others keep — in memory, SQLite, and the cluster's PostgreSQL (on a server of the test's
/// own, where PostgreSQL's binaries are; see ``ClusterTests``).
@Suite("Delivery stores: in memory, SQLite and PostgreSQL behave alike")
struct DeliveryStoreTests {
  enum Kind: String, CaseIterable, Sendable {
    case inMemory
    case sqlite
    case postgres

    /// The kinds this machine can run.
    static var available: [Kind] { clusterTestsCanRun ? Self.allCases : [.inMemory, .sqlite] }
  }

  /// Runs `body` on a fresh store of `kind`, and removes its folder afterwards.
  static func withStore(_ kind: Kind, _ body: (any DeliveryStore) async throws -> Void) async throws {
    switch kind {
    case .inMemory:
      try await body(InMemoryDeliveryStore(capacity: 100))
    case .sqlite:
      let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-store-\(UUID().uuidString)").path
      defer { try? FileManager.default.removeItem(atPath: directory) }
      let store = try SQLiteDeliveryStore(directory: directory)
      defer { try? store.close() }
      try await body(store)
    case .postgres:
      try await Self.withPostgresStore { store in try await body(store) }
    }
  }

  /// Runs `body` on a PostgreSQL store on a new server.
  static func withPostgresStore(_ body: (PostgresDeliveryStore) async throws -> Void) async throws {
    let server = try await offThePool { try ScratchPostgres() }
    defer { server.stop() }
    let client = PostgresClient(
      configuration: .init(host: "127.0.0.1", port: server.port, username: "postgres", password: nil, database: "postgres", tls: .disable)
    )
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { await client.run() }
      defer { group.cancelAll() }
      let store = try await PostgresDeliveryStore.open(hub: "hub", client: client, logger: Logger(label: "test"))
      group.addTask { await store.writer.run() }
      try await body(store)
      await store.writer.flush()
      store.writer.close()
    }
  }


  @Test("PostgreSQL: a write it cannot store (a NUL in a text) fails alone, before the batch; the writes queued with it are committed", .enabled(if: clusterTestsCanRun))
  func unstorableWriteFailsAlone() async throws {
    try await Self.withPostgresStore { store in
      let expires = Date().timeIntervalSince1970 + 600
      let results = await withTaskGroup(of: (Int, Bool).self) { group in
        for n in 0 ..< 200 {
          group.addTask {
            let text = n == 77 ? "bad\u{0}text" : "text \(n)"
            do {
              _ = try await store.writer.write(.outgoing(OutgoingRecord(id: "id-\(n)", peer: "edge", text: text, expiresAt: expires)))
              return (n, true)
            } catch {
              return (n, error is PostgresWriteBatch.Unstorable)
            }
          }
        }
        var results: [Int: Bool] = [:]
        for await (n, ok) in group { results[n] = ok }
        return results
      }
      #expect(results.count == 200 && results.values.allSatisfy { $0 }, "\(results.filter { !$0.value })")
      let stored = try await store.flushAndReopen().unansweredOutgoing()
      #expect(stored.count == 199 && !stored.contains { $0.id == "id-77" })
    }
  }

  @Test("A state folder in use by an open store is refused; once closed, it opens at once")
  func folderLock() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-lock-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let first = try SQLiteDeliveryStore(directory: directory)
    #expect {
      _ = try SQLiteDeliveryStore(directory: directory)
    } throws: { "\($0)".contains("is in use by another peer-agent process") }
    try first.close()
    let second = try SQLiteDeliveryStore(directory: directory)
    try second.close()
  }

  @Test("Outgoing requests: kept in order, answered, readdressed, forgotten", arguments: Kind.available)
  func outgoing(kind: Kind) async throws {
    try await Self.withStore(kind) { store in
      #expect(store.isDurable == (kind != .inMemory))
      for id in ["a", "b", "c"] {
        try await store.recordOutgoing(OutgoingRecord(id: id, peer: "127.0.0.1:7000", text: "text \(id)", expiresAt: 1000))
      }
      store.renamePeer("127.0.0.1:7000", to: "hub")
      let answer = Answer(id: "b", text: "done", error: nil, code: nil, from: .verified("hub"))
      store.recordAnswer(answer)
      store.removeOutgoing(id: "a")
      // PostgreSQL's store reads them when it opens, as a hub does at its start.
      let records = try await (store as? PostgresDeliveryStore)?.flushAndReopen().unansweredOutgoing() ?? store.unansweredOutgoing()
      #expect(records.map(\.id) == ["b", "c"])
      #expect(records.allSatisfy { $0.peer == "hub" })
      #expect(records[0].answer == answer)
      #expect(records[1].answer == nil)
      #expect(records[1].text == "text c")
      #expect(records[1].expiresAt == 1000)
    }
  }

  @Test("The window: replies by sender and id, acceptances that keep a reply, pruning by age and count", arguments: Kind.available)
  func window(kind: Kind) async throws {
    try await Self.withStore(kind) { store in
      try await store.recordReply(Answer(id: "1", text: "one"), from: "edge", at: 10)
      try await store.recordReply(Answer(id: "2", text: "", error: "failed"), from: "edge", at: 20)
      #expect(try await store.windowEntry(for: "1", from: "edge") == .answered(Answer(id: "1", text: "one")))
      #expect(try await store.windowEntry(for: "2", from: "edge") == .answered(Answer(id: "2", text: "", error: "failed")))
      #expect(try await store.windowEntry(for: "1", from: "other") == nil, "another sender's id is another request")

      try await store.recordAcceptance(of: "3", from: "edge", at: 30)
      try await store.recordAcceptance(of: "1", from: "edge", at: 30)
      #expect(try await store.windowEntry(for: "3", from: "edge") == .accepted)
      #expect(try await store.windowEntry(for: "1", from: "edge") == .answered(Answer(id: "1", text: "one")), "an acceptance keeps a reply")
      try await store.recordReply(Answer(id: "3", text: "three"), from: "edge", at: 31)
      #expect(try await store.windowEntry(for: "3", from: "edge") == .answered(Answer(id: "3", text: "three")))

      try await store.pruneReplies(before: 15, bounds: WindowBounds(count: 100))
      #expect(try await store.windowEntry(for: "1", from: "edge") == nil, "older than the retention")
      #expect(try await store.windowEntry(for: "2", from: "edge") != nil)
      try await store.pruneReplies(before: 0, bounds: WindowBounds(count: 1))
      #expect(try await store.windowEntry(for: "2", from: "edge") == nil, "beyond the capacity: oldest first")
      #expect(try await store.windowEntry(for: "3", from: "edge") != nil)
    }
  }

  @Test("A sender that floods the window forgets its own replies, never another's", arguments: Kind.available)
  func windowShares(kind: Kind) async throws {
    try await Self.withStore(kind) { store in
      let text = String(repeating: "x", count: 1000)
      let cost = WindowBounds.cost(id: "q-0", text: text, error: nil)
      for i in 0 ..< 5 {
        try await store.recordReply(Answer(id: "q-\(i)", text: text), from: "quiet", at: Double(i))
      }
      for i in 0 ..< 200 {
        try await store.recordReply(Answer(id: "f-\(i)", text: text), from: "flood", at: Double(10 + i))
      }
      // Each sender may hold 20 entries; all of them together 30.
      let bounds = WindowBounds(count: 1_000, bytes: 30 * cost, bytesPerSender: 20 * cost)
      try await store.pruneReplies(before: 0, bounds: bounds)
      for i in 0 ..< 5 {
        #expect(try await store.windowEntry(for: "q-\(i)", from: "quiet") != nil, "the quiet sender keeps reply \(i)")
      }
      var kept: [Int] = []
      for i in 0 ..< 200 where try await store.windowEntry(for: "f-\(i)", from: "flood") != nil { kept.append(i) }
      #expect(kept.count <= 20 && kept.count >= 18, "the flood keeps at most its share (kept \(kept.count))")
      #expect(kept.last == 199, "the flood keeps its newest")
      #expect(store.windowEvictions >= 180)

      // The whole window over its bytes: the sender holding the most gives way.
      for i in 0 ..< 40 {
        try await store.recordReply(Answer(id: "o-\(i)", text: text), from: "other", at: Double(300 + i))
      }
      try await store.pruneReplies(before: 0, bounds: WindowBounds(count: 1_000, bytes: 30 * cost, bytesPerSender: 20 * cost))
      for i in 0 ..< 5 {
        #expect(try await store.windowEntry(for: "q-\(i)", from: "quiet") != nil, "the quiet sender still keeps reply \(i)")
      }
    }
  }

  @Test("In memory, the window keeps within its bounds as replies are recorded, not only when pruned")
  func windowBoundedOnRecord() async throws {
    let text = String(repeating: "y", count: 4096)
    let cost = WindowBounds.cost(id: "r-0000", text: text, error: nil)
    let store = InMemoryDeliveryStore(bounds: WindowBounds(count: 1_000_000, bytes: 100 * cost, bytesPerSender: 50 * cost))
    for i in 0 ..< 30_000 {
      try await store.recordReply(Answer(id: "r-\(i)", text: text), from: "flood", at: Double(i))
    }
    try await store.recordReply(Answer(id: "a", text: text), from: "quiet", at: 40_000)
    let kept = (0 ..< 30_000).filter { (try? store.windowEntry(for: "r-\($0)", from: "flood")) != nil }
    #expect(kept.count <= 50)
    #expect(try await store.windowEntry(for: "a", from: "quiet") != nil)
    #expect(store.windowEvictions >= 29_950)
  }

  @Test(
    "In memory, a full window evicts in place: 300,000 replies through a window of 100,000 in seconds (a copy of the window per eviction took minutes, and live-locked a hub)",
    .timeLimit(.minutes(1))
  )
  func windowEvictsInPlace() async throws {
    let store = InMemoryDeliveryStore(bounds: WindowBounds(count: 100_000))
    for i in 0 ..< 300_000 {
      try await store.recordReply(Answer(id: "r-\(i)", text: "x"), from: "flood", at: Double(i))
    }
    #expect(store.windowEvictions == 200_000)
    #expect(try await store.windowEntry(for: "r-299999", from: "flood") != nil)
    #expect(try await store.windowEntry(for: "r-199999", from: "flood") == nil)
  }

  @Test("The state folder is created 0700 and its database files 0600; a certificate folder 0700 with 0600 keys")
  func privateFiles() async throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-modes-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    func mode(_ path: String) throws -> Int {
      (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }
    let state = (root as NSString).appendingPathComponent("state")
    let store = try SQLiteDeliveryStore(directory: state)
    try await store.recordOutgoing(OutgoingRecord(id: "a", peer: "hub", text: "x", expiresAt: 1))
    #expect(try mode(state) == 0o700)
    for file in ["delivery.sqlite", "delivery.sqlite-wal", "delivery.sqlite-shm", "lock"] {
      let path = (state as NSString).appendingPathComponent(file)
      if FileManager.default.fileExists(atPath: path) { #expect(try mode(path) == 0o600, "\(file)") }
    }
    try store.close()

    let certs = (root as NSString).appendingPathComponent("certs")
    try DevelopmentCertificates.write(names: ["hub"], to: certs)
    #expect(try mode(certs) == 0o700)
    #expect(try mode((certs as NSString).appendingPathComponent("ca-key.pem")) == 0o600)
    #expect(try mode((certs as NSString).appendingPathComponent("hub-key.pem")) == 0o600)
    #expect(try mode((certs as NSString).appendingPathComponent("hub.pem")) == 0o644)
    // A second run never overwrites the key; with force it writes a new one, still owner-only.
    let key = (certs as NSString).appendingPathComponent("hub-key.pem")
    let before = try String(contentsOfFile: key, encoding: .utf8)
    #expect(throws: PeerAgentError.self) { try DevelopmentCertificates.write(names: ["hub"], to: certs) }
    #expect(try String(contentsOfFile: key, encoding: .utf8) == before)
    try DevelopmentCertificates.write(names: ["hub"], to: certs, force: true)
    #expect(try String(contentsOfFile: key, encoding: .utf8) != before)
    #expect(try mode(key) == 0o600)
  }
}

/// Group commit: writes pending together share one transaction, in order, and one failing
/// write fails alone.
@Suite("Group commit: batched SQLite writes off the caller's thread")
struct GroupCommitTests {
  static func withPool(_ body: (DatabasePool) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-group-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let pool = try DatabasePool(path: (directory as NSString).appendingPathComponent("db.sqlite"))
    try await pool.write { db in try db.execute(sql: "CREATE TABLE t (n INTEGER PRIMARY KEY)") }
    try await body(pool)
    try pool.close()
  }

  @Test("Writes queued together share transactions and are applied in order")
  func batches() async throws {
    try await Self.withPool { pool in
      let commits = GroupCommit(database: pool)
      for n in 0 ..< 2000 {
        commits.enqueue { db in try db.execute(sql: "INSERT INTO t (n) VALUES (?)", arguments: [n]) }
      }
      // Deleted after it was inserted: order kept.
      commits.enqueue { db in try db.execute(sql: "DELETE FROM t WHERE n = 7") }
      try await commits.write { _ in }
      let count = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") }
      #expect(count == 1999)
      #expect(commits.failedWrites == 0)
      // 2,002 writes; one transaction each would be 2,002.
      #expect(commits.committedBatches < 1000, "\(commits.committedBatches) transactions")
    }
  }

  @Test("Concurrent awaited writes return once committed: another connection sees each at once")
  func awaited() async throws {
    try await Self.withPool { pool in
      let commits = GroupCommit(database: pool)
      try await withThrowingTaskGroup(of: Void.self) { group in
        for n in 0 ..< 500 {
          group.addTask {
            try await commits.write { db in try db.execute(sql: "INSERT INTO t (n) VALUES (?)", arguments: [n]) }
            // Committed: a reader (another connection) sees it at once.
            let seen = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT n FROM t WHERE n = ?", arguments: [n]) }
            #expect(seen == n)
          }
        }
        try await group.waitForAll()
      }
    }
  }

  @Test("One failing write in a batch fails alone; the others are committed")
  func failureIsolated() async throws {
    try await Self.withPool { pool in
      let commits = GroupCommit(database: pool)
      try await commits.write { db in try db.execute(sql: "INSERT INTO t (n) VALUES (1)") }
      let results = await withTaskGroup(of: (Int, Bool).self) { group in
        for n in [0, 1, 2, 3] {
          group.addTask {
            do {
              try await commits.write { db in try db.execute(sql: "INSERT INTO t (n) VALUES (?)", arguments: [n]) }
              return (n, true)
            } catch {
              return (n, false)
            }
          }
        }
        var results: [Int: Bool] = [:]
        for await (n, ok) in group { results[n] = ok }
        return results
      }
      #expect(results == [0: true, 1: false, 2: true, 3: true], "1 is taken")
      let count = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") }
      #expect(count == 4)
      #expect(commits.failedWrites == 1)
      commits.close()
      await #expect(throws: GroupCommit.Closed.self) { try await commits.write { _ in } }
    }
  }
}

extension DeliveryStore {
  /// Records `record` and returns once it is recorded.
  func recordOutgoing(_ record: OutgoingRecord) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
      self.recordOutgoing(record) { continuation.resume(with: $0) }
    }
  }
}

@Suite("The window filter: requests the SQLite window cannot hold are not looked up on disk")
struct WindowFilterTests {
  @Test("Every key added is found; few others are; a generation goes only once the prune covers it")
  func filter() {
    let filter = WindowFilter(now: 1000)
    for i in 0 ..< 20_000 { filter.insert(sender: "edge", id: "id-\(i)") }
    #expect((0 ..< 20_000).allSatisfy { filter.mayContain(sender: "edge", id: "id-\($0)") })
    let falsePositives = (0 ..< 20_000).filter { filter.mayContain(sender: "edge", id: "other-\($0)") }.count
    #expect(falsePositives < 20, "\(falsePositives) false positives in 20,000")
    #expect(!filter.mayContain(sender: "hub", id: "id-1") || falsePositives > 0)

    // The prune's cutoff is before the generation started: it may hold keys still on disk.
    filter.pruned(before: 999, now: 2000)
    #expect(filter.mayContain(sender: "edge", id: "id-7"))
    // Covers it: the keys move to the previous generation, still found.
    filter.pruned(before: 1000, now: 2000)
    #expect(filter.mayContain(sender: "edge", id: "id-7"))
    filter.insert(sender: "edge", id: "late")
    // Covers the next one too: the first keys were all pruned from disk, and are forgotten.
    filter.pruned(before: 2000, now: 3000)
    #expect(filter.mayContain(sender: "edge", id: "late"))
    let kept = (0 ..< 20_000).filter { filter.mayContain(sender: "edge", id: "id-\($0)") }.count
    #expect(kept < 20)
  }

  @Test("A reply recorded in SQLite is found again after a restart (the filter is rebuilt from disk)")
  func rebuilt() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-filter-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    do {
      let store = try SQLiteDeliveryStore(directory: directory)
      try await store.recordReply(Answer(id: "r", text: "kept"), from: "edge", at: Date().timeIntervalSince1970)
      try store.close()
    }
    let store = try SQLiteDeliveryStore(directory: directory)
    defer { try? store.close() }
    #expect(try await store.windowEntry(for: "r", from: "edge") == .answered(Answer(id: "r", text: "kept")))
    #expect(try await store.windowEntry(for: "s", from: "edge") == nil)
  }
}

extension PostgresDeliveryStore {
  /// Writes what is pending and opens the store again, as the hub's next run does: it reads
  /// its unanswered requests as they are now.
  func flushAndReopen() async throws -> PostgresDeliveryStore {
    await self.writer.flush()
    return try await Self.open(hub: self.hub, client: self.client, logger: self.logger)
  }
}
