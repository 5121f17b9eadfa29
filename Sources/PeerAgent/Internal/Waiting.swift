internal import DequeModule
private import Synchronization

/// The callers waiting for something, oldest first: the one queue of suspended continuations
/// that every waiting place of PeerAgent keeps inside its own locked state (a window with no
/// room, "the only peer" not connected yet, a promise not kept yet, a full concurrency limit).
///
/// It holds the continuations only; the owner decides, under its lock, whether a caller waits
/// (``suspend(_:onCancel:)``), and resumes what it takes out after unlocking.
struct WaiterQueue<Value: Sendable>: Sendable {
  /// Checked in debug builds (the tests catch a continuation resumed twice or never); unchecked
  /// in release, where a checked one costs an allocation and a metadata lookup per wait.
  #if DEBUG
  typealias Continuation = CheckedContinuation<Value, any Error>
  #else
  typealias Continuation = UnsafeContinuation<Value, any Error>
  #endif

  /// Identifies one waiter, so that its cancellation removes exactly it.
  struct Key: Hashable, Sendable {
    fileprivate let raw: UInt64
  }

  private struct Waiter: Sendable {
    var key: Key
    var deadline: ContinuousClock.Instant?
    var continuation: Continuation
  }

  private var waiters = Deque<Waiter>()

  init() {}

  /// Whether no caller waits.
  var isEmpty: Bool { self.waiters.isEmpty }

  /// Adds a caller at the back; `deadline`, if given, is when ``removeExpired(at:)`` takes it.
  ///
  /// A caller whose task is cancelled already is resumed with `CancellationError` instead: its
  /// cancellation handler may have run before it was added, and found nothing to remove.
  mutating func append(_ key: Key, _ continuation: Continuation, deadline: ContinuousClock.Instant? = nil) {
    if Task.isCancelled {
      continuation.resume(throwing: CancellationError())
      return
    }
    self.waiters.append(Waiter(key: key, deadline: deadline, continuation: continuation))
  }

  /// Moves every caller of `other` behind this queue's, keeping their keys and deadlines.
  mutating func append(contentsOf other: inout WaiterQueue) {
    self.waiters.append(contentsOf: other.waiters)
    other.waiters.removeAll()
  }

  /// Takes the caller `key` out (it was cancelled), if it still waits.
  mutating func remove(_ key: Key) -> Continuation? {
    guard let index = self.waiters.firstIndex(where: { $0.key == key }) else { return nil }
    return self.waiters.remove(at: index).continuation
  }

  /// Takes the longest-waiting caller out.
  mutating func popFirst() -> Continuation? {
    self.waiters.popFirst()?.continuation
  }

  /// Takes every caller out, oldest first.
  mutating func removeAll() -> [Continuation] {
    defer { self.waiters.removeAll() }
    return self.waiters.map(\.continuation)
  }

  /// Takes out the callers whose deadline is at or before `now`.
  mutating func removeExpired(at now: ContinuousClock.Instant) -> [Continuation] {
    guard self.waiters.contains(where: { $0.deadline.map { $0 <= now } ?? false }) else { return [] }
    var expired: [Continuation] = []
    var kept = Deque<Waiter>()
    for waiter in self.waiters {
      if let deadline = waiter.deadline, deadline <= now {
        expired.append(waiter.continuation)
      } else {
        kept.append(waiter)
      }
    }
    self.waiters = kept
    return expired
  }

  /// Suspends the calling task as one waiter.
  ///
  /// - Parameters:
  ///   - enqueue: Called once, synchronously, with the waiter's key and continuation: under the
  ///     owner's lock, it returns the outcome when there is one already (the continuation is
  ///     then resumed with it), or appends the continuation to the owner's queue and returns
  ///     `nil`.
  ///   - dequeue: Called if the task is cancelled while waiting: under the owner's lock, takes
  ///     the waiter out of the queue (it is then resumed with `CancellationError`), or returns
  ///     `nil` when it was resumed already.
  static func suspend(
    _ enqueue: (Key, Continuation) -> Result<Value, any Error>?,
    onCancel dequeue: @Sendable (Key) -> Continuation?
  ) async throws -> Value {
    let key = Key(raw: waiterKeys.wrappingAdd(1, ordering: .relaxed).newValue)
    return try await withTaskCancellationHandler {
      #if DEBUG
      try await withCheckedThrowingContinuation { (continuation: Continuation) in
        if let now = enqueue(key, continuation) { continuation.resume(with: now) }
      }
      #else
      try await withUnsafeThrowingContinuation { (continuation: Continuation) in
        if let now = enqueue(key, continuation) { continuation.resume(with: now) }
      }
      #endif
    } onCancel: {
      dequeue(key)?.resume(throwing: CancellationError())
    }
  }
}

/// The source of waiter keys, shared by every queue (a static stored property cannot live in a
/// generic type).
private let waiterKeys = Atomic<UInt64>(0)

/// An outcome set once and awaited by any number of callers: a request's reply, the listener's
/// address, the reply a repeated request waits for, a ``Signal``.
package final class Promise<Value: Sendable>: Sendable {
  private struct State {
    var outcome: Result<Value, any Error>?
    var waiters = WaiterQueue<Value>()
  }

  private let state = Mutex(State())

  package init() {}

  /// Whether the outcome is set.
  package var isComplete: Bool { self.state.withLock { $0.outcome != nil } }

  /// The value, if the promise was fulfilled with one.
  package var currentValue: Value? { self.state.withLock { try? $0.outcome?.get() } }

  /// Sets the outcome, unless one is set already, and wakes every waiter. Returns whether this
  /// call set it.
  @discardableResult
  package func complete(_ outcome: Result<Value, any Error>) -> Bool {
    let waiters: [WaiterQueue<Value>.Continuation]? = self.state.withLock { state in
      guard state.outcome == nil else { return nil }
      state.outcome = outcome
      return state.waiters.removeAll()
    }
    guard let waiters else { return false }
    for waiter in waiters { waiter.resume(with: outcome) }
    return true
  }

  /// Waits for the outcome. Cancelling the waiting task ends its wait (with
  /// `CancellationError`), not the promise.
  package func wait() async throws -> Value {
    if let outcome = self.state.withLock({ $0.outcome }) { return try outcome.get() }
    return try await WaiterQueue.suspend { key, continuation in
      self.state.withLock { state in
        if let outcome = state.outcome { return outcome }
        if Task.isCancelled { return .failure(CancellationError()) }
        state.waiters.append(key, continuation)
        return nil
      }
    } onCancel: { key in
      self.state.withLock { $0.waiters.remove(key) }
    }
  }
}
