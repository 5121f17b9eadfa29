internal import Logging
internal import PeerAgent
internal import PostgresNIO
private import Synchronization

/// The one writer of a ``PostgresDeliveryStore``: applies the store's writes in the order
/// they are made, committing whatever is pending in one transaction (group commit) as a few
/// statements over arrays (``PostgresWriteBatch``). ``run()`` does the writing, in the task
/// group that owns the store.
final class PostgresWriter: Sendable {
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

  private let hub: String
  private let runID: String
  private let client: PostgresClient
  private let logger: Logger
  private let pending = Mutex(Pending())
  private let wake = Doorbell()
  private let failures = Atomic<Int>(0)
  /// Told how long each transaction took (the hub's ``ClusterActivity``), once the peer exists.
  private let committed = Mutex<(@Sendable (Duration) -> Void)?>(nil)

  /// Where the writer says whether the database answers (the hub's), once there is one.
  private let health = Mutex<DatabaseHealth?>(nil)

  func report(to health: DatabaseHealth) {
    self.health.withLock { $0 = health }
  }

  /// Tells `observe` how long each transaction takes, from now on.
  func observeCommits(_ observe: @escaping @Sendable (Duration) -> Void) {
    self.committed.withLock { $0 = observe }
  }

  init(hub: String, run: String, client: PostgresClient, logger: Logger) {
    self.hub = hub
    self.runID = run
    self.client = client
    self.logger = logger
  }

  /// Writes that failed since the store opened.
  var failedWrites: Int { self.failures.load(ordering: .relaxed) }

  /// Applies the writes in order, in batches, until ``close()`` and every write before it is
  /// done; then returns. A batch that fails is retried one write per transaction, so that only
  /// the failing write reports its error.
  func run() async {
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
  /// (``PostgresWriteBatch``) rather than one round trip per write. A write PostgreSQL cannot
  /// store fails alone first, without a round trip.
  private func commit(_ batch: [Write]) async {
    var storable: [Write] = []
    for write in batch {
      if write.operation.isUnstorable {
        self.failed(write, PostgresWriteBatch.Unstorable())
      } else {
        storable.append(write)
      }
    }
    await self.commit(storable: storable[...])
  }

  /// Commits `batch`; when it fails, each half on its own, in order, down to the writes that
  /// fail: one bad write among N costs about 2·log₂ N transactions, not N, and the others
  /// still go in batches.
  private func commit(storable batch: ArraySlice<Write>) async {
    guard !batch.isEmpty else { return }
    let started = ContinuousClock.now
    defer {
      let observe = self.committed.withLock { $0 }
      observe?(.now - started)
    }
    let health = self.health.withLock { $0 }
    do {
      let operations = batch.map(\.operation)
      // Within DatabaseHealth's limit: postgres-nio's pool waits for a connection as long as
      // it takes, and a caller whose request cannot be recorded must hear so.
      let results = try await DatabaseHealth.withDeadline(DatabaseHealth.limit) {
        try await self.client.withTransaction(logger: self.logger) { connection in
          try await PostgresWriteBatch(hub: self.hub, run: self.runID, writes: operations).apply(on: connection, logger: self.logger)
        }
      }
      health?.reached()
      for (write, result) in zip(batch, results) { write.done?(.success(result)) }
    } catch where DatabaseHealth.isUnreachable(error) {
      // Not a bad write: the database. Every write of the batch fails with that reason (no
      // halving: each half would wait as long), said once by DatabaseHealth.
      health?.lost(error)
      let unreachable = Unreachable(reason: DatabaseHealth.describe(error))
      for write in batch {
        self.failures.add(1, ordering: .relaxed)
        write.done?(.failure(unreachable))
      }
    } catch {
      guard batch.count > 1 else {
        self.failed(batch[batch.startIndex], error)
        return
      }
      let middle = batch.startIndex + batch.count / 2
      await self.commit(storable: batch[..<middle])
      await self.commit(storable: batch[middle...])
    }
  }

  /// The database did not answer: what a caller whose write failed is told.
  struct Unreachable: Error, CustomStringConvertible {
    var reason: String
    var description: String { "the cluster database is unreachable (\(self.reason)); nothing can be recorded until it answers again" }
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

  func enqueue(_ operation: PostgresWriteBatch.Operation, then done: (@Sendable (Result<Void, any Error>) -> Void)? = nil) {
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
  func write(_ operation: PostgresWriteBatch.Operation) async throws -> Bool {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
      self.submit(Write(operation: operation) { continuation.resume(with: $0) })
    }
  }

  /// Waits until every write submitted so far is done.
  func flush() async {
    let promise: Promise<Void>? = self.pending.withLock { pending in
      guard pending.written < pending.submitted else { return nil }
      let promise = Promise<Void>()
      pending.flushed.append((pending.submitted, promise))
      return promise
    }
    self.wake.ring()
    try? await promise?.wait()
  }

  /// Refuses new writes; ``run()`` returns once the pending ones are written.
  func close() {
    self.pending.withLock { $0.closed = true }
    self.wake.ring()
  }

  /// The store was closed before the write was made.
  struct Closed: Error, CustomStringConvertible {
    var description: String { "the cluster delivery store is closed" }
  }
}
