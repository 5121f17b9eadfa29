private import Synchronization

/// The conversation with one remote peer on one outbound stream — a `sendStatus` request
/// stream this peer opened, or a `getTask` response stream a dialer opened: requests are
/// written on it, replies are matched on it (by id, or in the order written for older peers
/// that answer without one), and its health says when the remote was last heard.
///
/// The stream's owner — a dialer's session or the `getTask` handler — writes what
/// ``drain(into:write:)`` hands it. The requests themselves live in the ``Outbox``: when the
/// link ends they stay there, and the ``LinkTable`` writes them again on the next link to the
/// same remote.
final class Link: Sendable {
  /// One message for the stream: a request, or a heartbeat.
  struct Outgoing: Sendable, Hashable {
    /// The request id.
    var id: String
    /// The request text.
    var text: String
    /// A heartbeat, not a request: answered by the remote's PeerAgent, never by its handler.
    var isHeartbeat = false
    /// The sender's trace context (empty when tracing is off).
    var traceContext: [String: String] = [:]

    /// A heartbeat.
    static var heartbeat: Self { Self(id: "", text: "", isHeartbeat: true) }
  }

  /// Who is at the other end.
  let identity: PeerIdentity
  /// Which stream this is.
  let kind: LinkKind
  /// What the stream's writer has to write.
  let outgoing = WriteQueue<Outgoing>()
  /// When the remote was last heard on this link's streams (any message, heartbeats included).
  let health = LinkHealth()
  /// Ids in the order they were written, for replies without an id (older peers answer in
  /// order). Bounded: only the most recent are kept.
  private let written = Mutex<(ids: [String], head: Int)>(([], 0))
  private let writtenLimit: Int
  private let heartbeats = Atomic<Bool>(false)
  /// The largest message the remote announced it accepts; 0 while unknown.
  private let remoteMaximum = Atomic<Int>(0)

  /// Creates a link whose remote has at most `window` requests unanswered.
  /// The event loop this link's stream runs on (`nil`: the concurrency pool).
  let executor: EventLoopExecutor?

  init(identity: PeerIdentity, kind: LinkKind, window: Int, executor: EventLoopExecutor? = nil) {
    self.identity = identity
    self.kind = kind
    self.writtenLimit = max(1024, 2 * window)
    self.executor = executor
  }

  /// Whether the remote announced that it answers heartbeats on this link's stream.
  var remoteHeartbeats: Bool {
    get { self.heartbeats.load(ordering: .relaxed) }
    set { self.heartbeats.store(newValue, ordering: .relaxed) }
  }

  /// The largest message the remote announced it accepts, if it did.
  var remoteMaximumMessageBytes: Int? {
    get {
      let value = self.remoteMaximum.load(ordering: .relaxed)
      return value > 0 ? value : nil
    }
    set { self.remoteMaximum.store(max(0, newValue ?? 0), ordering: .relaxed) }
  }

  /// Learns what the remote announced in the metadata of its stream: the largest message it
  /// accepts, and whether it heartbeats (then its silence on this link counts from now).
  func learn(from announcement: Announcement) {
    self.remoteMaximumMessageBytes = announcement.maximumMessageBytes
    if announcement.heartbeats { self.watchHeartbeats() }
  }

  /// The remote heartbeats on this link: send it heartbeats and watch its silence from now.
  func watchHeartbeats() {
    self.remoteHeartbeats = true
    self.health.arm()
  }

  /// Queues one message for the stream. Returns `false` when the stream has ended.
  @discardableResult
  func enqueue(_ outgoing: Outgoing) -> Bool {
    self.outgoing.enqueue(outgoing)
  }

  /// Matches a reply that came on this link (or on the `tellResult` stream that answers it) to
  /// its request — by id, or without one, to the oldest request written on this link that
  /// `outbox` still waits for — and hands it to `outbox`, from this link's remote.
  func deliver(_ answer: Answer, to outbox: Outbox) -> Outbox.Resolution {
    var answer = answer
    answer.from = self.identity
    if answer.id.isEmpty {
      guard let id = self.oldestWritten(where: { outbox.isWaiting(id: $0) }) else { return .notWaiting }
      answer.id = id
    }
    return outbox.resolve(answer)
  }

  /// Writes what comes on ``outgoing`` with `write`, a batch at a time, until the link ends:
  /// heartbeats as they come, and each request unless `outbox` no longer waits for it
  /// (answered meanwhile), recording the order they were written in. A request larger than
  /// the remote announced it accepts is failed instead (the remote would reset the stream).
  func drain(into outbox: Outbox, write: ([Outgoing]) async throws -> Void) async throws {
    while let batch = await self.outgoing.next() {
      let limit = self.remoteMaximumMessageBytes
      let due = batch.filter { outgoing in
        if outgoing.isHeartbeat { return true }
        if let limit, WireSize.request(id: outgoing.id, text: outgoing.text) > limit {
          outbox.refuse(
            id: outgoing.id,
            because: .messageTooLarge(
              bytes: WireSize.request(id: outgoing.id, text: outgoing.text),
              limit: limit,
              whose: "'\(self.identity.name)' accepts"
            )
          )
          return false
        }
        guard outbox.willWrite(id: outgoing.id) else { return false }
        self.recordWritten(id: outgoing.id)
        return true
      }
      if !due.isEmpty { try await write(due) }
    }
  }

  /// Ends the outbound stream. Requests written on it stay in the outbox.
  func finishOutgoing() {
    self.outgoing.finish()
  }

  /// Records that request `id` is being written now. The wire order, not the order callers
  /// submitted in, is what a peer answering without ids follows.
  private func recordWritten(id: String) {
    self.written.withLock { written in
      written.ids.append(id)
      if written.ids.count - written.head > self.writtenLimit {
        written.head = written.ids.count - self.writtenLimit
      }
      if written.head > 1024 && written.head * 2 > written.ids.count {
        written.ids.removeFirst(written.head)
        written.head = 0
      }
    }
  }

  /// The oldest written request that `isWaiting` still, for a reply without an id.
  private func oldestWritten(where isWaiting: (String) -> Bool) -> String? {
    self.written.withLock { written in
      while written.head < written.ids.count {
        let id = written.ids[written.head]
        written.head += 1
        if isWaiting(id) { return id }
      }
      return nil
    }
  }
}

/// When the remote was last heard on one stream, and whether it heartbeats at all.
///
/// A stream is watched only once the remote has shown it is a PeerAgent that heartbeats (its
/// first heartbeat, or its announcement in metadata): the article's programs and other older
/// peers never heartbeat, and their silence means nothing.
final class LinkHealth: Sendable {
  private static let epoch = ContinuousClock.now
  /// Nanoseconds since `epoch` at the last message; 0 while unarmed.
  private let lastHeard = Atomic<Int64>(0)

  init() {}

  /// The remote was heard: any message on the stream. Counts only once the stream is watched.
  func heard() {
    guard self.lastHeard.load(ordering: .relaxed) != 0 else { return }
    self.store()
  }

  /// Starts watching (if not yet), as if the remote had just been heard: the remote announced
  /// heartbeats, or sent one.
  func arm() {
    self.store()
  }

  private func store() {
    self.lastHeard.store(max(1, (ContinuousClock.now - Self.epoch).nanoseconds), ordering: .relaxed)
  }

  /// How long the remote has been silent; `nil` while the stream is not watched.
  func silence(at now: ContinuousClock.Instant = .now) -> Duration? {
    let last = self.lastHeard.load(ordering: .relaxed)
    guard last > 0 else { return nil }
    return (now - Self.epoch) - .nanoseconds(last)
  }
}

/// What one stream writer has to write: any number of producers, one consumer that takes
/// everything pending at once, so that a burst goes to the RPC writer in one call
/// (`write(contentsOf:)`) rather than one suspension per message.
///
/// Unbounded, like the `AsyncStream` it replaces: what feeds it is bounded elsewhere (the
/// outbox's window, the inbound concurrency limit). Ends with ``finish()``, or when its
/// consumer is cancelled; after that ``enqueue(_:)`` returns `false`.
final class WriteQueue<Element: Sendable>: Sendable {
  /// Checked in debug builds, unchecked in release (see ``WaiterQueue/Continuation``).
  #if DEBUG
  private typealias Consumer = CheckedContinuation<[Element]?, Never>
  #else
  private typealias Consumer = UnsafeContinuation<[Element]?, Never>
  #endif

  private struct State {
    var pending: [Element] = []
    var consumer: Consumer?
    var finished = false
  }

  private let state = Mutex(State())

  init() {}

  /// Adds one element. Returns `false` when the queue has ended.
  @discardableResult
  func enqueue(_ element: Element) -> Bool {
    let (accepted, consumer): (Bool, Consumer?) = self.state.withLock { state in
      if state.finished { return (false, nil) }
      if let consumer = state.consumer {
        state.consumer = nil
        return (true, consumer)
      }
      state.pending.append(element)
      return (true, nil)
    }
    consumer?.resume(returning: [element])
    return accepted
  }

  /// Everything pending, in order, waiting until there is something; `nil` once the queue has
  /// ended and is empty.
  func next() async -> [Element]? {
    let body = { (continuation: Consumer) in
      let now: [Element]?? = self.state.withLock { state in
        if !state.pending.isEmpty {
          var batch: [Element] = []
          swap(&batch, &state.pending)
          return .some(batch)
        }
        if state.finished || Task.isCancelled {
          state.finished = true
          return .some(nil)
        }
        state.consumer = continuation
        return .none
      }
      if let now { continuation.resume(returning: now) }
    }
    return await withTaskCancellationHandler {
      #if DEBUG
      await withCheckedContinuation(body)
      #else
      await withUnsafeContinuation(body)
      #endif
    } onCancel: {
      self.finish()
    }
  }

  /// Ends the queue: elements already pending are still handed out, new ones are refused.
  func finish() {
    let consumer = self.state.withLock { state in
      state.finished = true
      defer { state.consumer = nil }
      return state.consumer
    }
    consumer?.resume(returning: nil)
  }
}
