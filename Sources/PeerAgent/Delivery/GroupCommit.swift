internal import GRDB
private import Synchronization

/// Writes to an SQLite database in batches: every write that is pending when the database's
/// writer is free goes into one transaction (group commit), on GRDB's writer queue — never on
/// the caller's thread, so an event loop that records a request goes on serving its
/// connections meanwhile.
///
/// Writes are applied in the order they were submitted. A caller that must know its write is
/// on disk awaits ``write(_:)``: it returns once the transaction holding it has committed. A
/// caller that needs no such promise ``enqueue(_:)``s it and goes on.
///
/// One failing write does not fail the others in its batch: the batch is then retried one
/// write per transaction, and only the failing one reports its error.
final class GroupCommit: Sendable {
  /// One write: what it does to the database, and whom to tell once it is committed.
  private struct Write: Sendable {
    let apply: @Sendable (Database) throws -> Void
    let done: (@Sendable (Result<Void, any Error>) -> Void)?
  }

  private struct State {
    var pending: [Write] = []
    /// Whether a drain is scheduled or running on the writer queue: it takes whatever is
    /// pending until nothing is.
    var draining = false
    var closed = false
  }

  /// The most writes in one transaction: a long queue is written in several, so that the
  /// first callers are not held until the last write of a very long batch.
  static let maximumBatch = 1024

  private let database: DatabasePool
  private let state = Mutex(State())
  private let failures = Atomic<Int>(0)
  private let batches = Atomic<Int>(0)

  init(database: DatabasePool) {
    self.database = database
  }

  /// Writes that failed since the store opened, awaited or not.
  var failedWrites: Int { self.failures.load(ordering: .relaxed) }
  /// Transactions committed since the store opened.
  var committedBatches: Int { self.batches.load(ordering: .relaxed) }

  /// Writes `apply` in the next batch and returns once it is committed.
  ///
  /// - Throws: What `apply` threw, or ``Closed`` when the store is closed.
  func write(_ apply: @escaping @Sendable (Database) throws -> Void) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
      self.submit(Write(apply: apply) { continuation.resume(with: $0) })
    }
  }

  /// Writes `apply` in the next batch, without waiting for it, and calls `done` (if any) on
  /// the writer once it is committed or failed. A failure is counted (``failedWrites``); a
  /// write after ``close()`` fails with ``Closed``.
  func enqueue(
    _ apply: @escaping @Sendable (Database) throws -> Void,
    then done: (@Sendable (Result<Void, any Error>) -> Void)? = nil
  ) {
    self.submit(Write(apply: apply, done: done))
  }

  /// Waits until every write submitted so far is committed (or failed).
  func flush() {
    self.database.writeWithoutTransaction { _ in }
  }

  /// Refuses new writes, then waits for the pending ones.
  func close() {
    self.state.withLock { $0.closed = true }
    self.flush()
  }

  /// The store was closed before the write was made.
  struct Closed: Error, CustomStringConvertible {
    var description: String { "the delivery store is closed" }
  }

  // MARK: - Private

  private func submit(_ write: Write) {
    let schedule: Bool? = self.state.withLock { state in
      guard !state.closed else { return nil }
      state.pending.append(write)
      guard !state.draining else { return false }
      state.draining = true
      return true
    }
    switch schedule {
    case nil:
      write.done?(.failure(Closed()))
    case true?:
      // The writer queue is serial: a drain scheduled now runs after the one that may still
      // be finishing, and a `flush()` queued later runs after it.
      self.database.asyncWriteWithoutTransaction { db in self.drain(db) }
    case false?:
      break
    }
  }

  /// Commits batches until nothing is pending.
  private func drain(_ db: Database) {
    while true {
      let batch: [Write] = self.state.withLock { state in
        guard !state.pending.isEmpty else {
          state.draining = false
          return []
        }
        let count = min(state.pending.count, Self.maximumBatch)
        let batch = Array(state.pending.prefix(count))
        state.pending.removeFirst(count)
        return batch
      }
      if batch.isEmpty { return }
      self.commit(batch, in: db)
    }
  }

  private func commit(_ batch: [Write], in db: Database) {
    do {
      try db.inTransaction {
        for write in batch { try write.apply(db) }
        return .commit
      }
      self.batches.add(1, ordering: .relaxed)
      for write in batch { write.done?(.success(())) }
    } catch {
      guard batch.count > 1 else {
        self.failed(batch[0], error)
        return
      }
      // One of them failed, and the transaction rolled back: each on its own, so that only
      // the failing one fails.
      for write in batch {
        do {
          try db.inTransaction {
            try write.apply(db)
            return .commit
          }
          self.batches.add(1, ordering: .relaxed)
          write.done?(.success(()))
        } catch {
          self.failed(write, error)
        }
      }
    }
  }

  private func failed(_ write: Write, _ error: any Error) {
    self.failures.add(1, ordering: .relaxed)
    write.done?(.failure(error))
  }
}
