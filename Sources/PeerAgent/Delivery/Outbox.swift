private import Foundation
internal import Synchronization

/// The requests this peer sent and has not seen answered, per remote peer, and the windows
/// that bound them.
///
/// A request enters when ``submit(id:to:text:deadline:)`` has recorded it in the store (and,
/// for a durable store, on disk), and leaves when its reply arrives or its deadline passes. In
/// between, the ``LinkTable`` writes it on the remote's current link and, whenever a new link
/// to that remote attaches (a reconnect), writes it again (``pending(for:)``): at-least-once
/// on the wire. A link going down fails nothing. The outbox knows no link: which link a
/// remote's requests are written on is the table's alone.
///
/// Each remote has a window of ``window`` unanswered requests; ``submit(id:to:text:deadline:)``
/// waits for room (backpressure), until the request's deadline.
final class Outbox: Sendable {
  /// Where requests are recorded, and their replies until the caller takes them.
  let store: any DeliveryStore
  /// The most unanswered requests per remote peer.
  let window: Int
  /// The largest request this peer sends, encoded.
  let maximumMessageBytes: Int
  /// Everything the outbox holds; also used by its window (`Outbox+Window.swift`).
  let state = Mutex(State())
  private let resendCount = Atomic<Int>(0)
  private let misdirectedCount = Atomic<Int>(0)
  private let metrics: PeerMetrics?
  private let outcomes: SentOutcomes

  init(store: any DeliveryStore, metrics: PeerMetrics? = nil, window: Int, maximumMessageBytes: Int = .max) {
    self.store = store
    self.metrics = metrics
    self.outcomes = SentOutcomes(metrics: metrics)
    self.window = max(1, window)
    self.maximumMessageBytes = maximumMessageBytes
  }

  /// Requests written more than once (after a reconnect or a restart) since the peer started.
  var resends: Int { self.resendCount.load(ordering: .relaxed) }

  /// The unanswered requests, for all remotes or one.
  func count(for peer: String? = nil) -> Int {
    self.state.withLock { state in
      if let peer { return state.queues[peer]?.count ?? 0 }
      return state.entries.count
    }
  }

  /// Loads the requests a previous run left unanswered (none for an in-memory store), and
  /// queues them for their remotes. Their deadlines keep the wall-clock time they were given.
  func recover() throws -> [Delivery] {
    let records = try self.store.unansweredOutgoing()
    let now = Date().timeIntervalSince1970
    let start = ContinuousClock.now
    return self.state.withLock { state in
      records.map { record in
        let promise = Promise<Answer>()
        let delivery = Delivery(
          id: record.id, text: record.text, peer: record.peer, promise: promise, started: start, outbox: self
        )
        if let answer = record.answer {
          // Answered before the restart, but the caller had not taken the reply: hand it over.
          promise.complete(.success(answer))
          return delivery
        }
        let size = WireSize.request(id: record.id, text: record.text)
        if size > self.maximumMessageBytes {
          // Accepted under a larger limit: it would never go through now. Failed, not resent.
          promise.complete(
            .failure(PeerAgentError.messageTooLarge(bytes: size, limit: self.maximumMessageBytes, whose: "this peer sends"))
          )
          return delivery
        }
        state.nextSequence += 1
        state.entries[record.id] = Entry(
          record: record,
          deadline: start.advanced(by: .clampedSeconds(record.expiresAt - now)),
          promise: promise,
          sequence: state.nextSequence,
          writes: 1  // it may have reached the remote before the restart
        )
        state.queues[record.peer, default: Queue()].ids.append(record.id)
        state.queues[record.peer, default: Queue()].count += 1
        return delivery
      }
    }
  }

  /// Accepts a request for `peer`: waits for room in its window and records it in the store.
  /// The caller then hands ``Accepted/outgoing`` to the ``LinkTable``, which writes it.
  ///
  /// - Returns: The accepted request, once it is recorded.
  /// - Throws: ``PeerAgentError``: `timedOut` (no room before `deadline`), `shuttingDown`,
  ///   `storageFailed`.
  func submit(
    id: String,
    to peer: String,
    text: String,
    deadline: ContinuousClock.Instant,
    trace: OutgoingTrace? = nil
  ) async throws -> Accepted {
    try await self.enqueue(id: id, to: peer, text: text, deadline: deadline, trace: trace).wait()
  }

  /// Accepts a request for `peer` without waiting for the store: waits for room in its window
  /// and starts recording it, after every request accepted before. Once it is recorded (for a
  /// durable store, on disk), it joins the outbox, `recorded` gets it — in the order the
  /// requests were accepted — and the returned promise is fulfilled with it.
  ///
  /// A caller that accepts many requests in a row so has them recorded together (group
  /// commit), instead of one disk write per request.
  ///
  /// - Throws: ``PeerAgentError``: `timedOut` (no room before `deadline`), `shuttingDown`.
  ///   The promise fails with `storageFailed`, or with the outbox's closing error.
  func enqueue(
    id: String,
    to peer: String,
    text: String,
    deadline: ContinuousClock.Instant,
    trace: OutgoingTrace? = nil,
    recorded: (@Sendable (Accepted) -> Void)? = nil
  ) async throws -> Promise<Accepted> {
    try await self.reserve(peer: peer, deadline: deadline)
    let record = OutgoingRecord(
      id: id,
      peer: peer,
      text: text,
      expiresAt: Date().timeIntervalSince1970 + (deadline - .now).seconds
    )
    let accepted = Promise<Accepted>()
    self.store.recordOutgoing(record) { result in
      switch result {
      case .failure(let error):
        self.release(peer: peer)
        accepted.complete(
          .failure(PeerAgentError(code: .storageFailed, message: "cannot record the request for '\(peer)': \(error)", cause: error))
        )
      case .success:
        switch self.admit(record, deadline: deadline, trace: trace) {
        case .success(let admitted):
          recorded?(admitted)
          accepted.complete(.success(admitted))
        case .failure(let error):
          accepted.complete(.failure(error))
        }
      }
    }
    return accepted
  }

  /// Puts a recorded request in the outbox — unless the outbox closed meanwhile: it then
  /// stays in the store, for the next run.
  private func admit(_ record: OutgoingRecord, deadline: ContinuousClock.Instant, trace: OutgoingTrace?) -> Result<Accepted, any Error> {
    let promise = Promise<Answer>()
    let sequence: UInt64? = self.state.withLock { state in
      if state.closedWith != nil { return nil }
      state.nextSequence += 1
      state.entries[record.id] = Entry(record: record, deadline: deadline, promise: promise, sequence: state.nextSequence, trace: trace)
      state.queues[record.peer, default: Queue()].ids.append(record.id)
      Self.compact(&state, peer: record.peer)
      return state.nextSequence
    }
    guard let sequence else {
      self.release(peer: record.peer)
      return .failure(self.state.withLock { $0.closedWith } ?? PeerAgentError(code: .shuttingDown, message: "the peer is shutting down"))
    }
    let context = trace?.context ?? [:]
    return .success(
      Accepted(
        delivery: Delivery(
          id: record.id, text: record.text, peer: record.peer, promise: promise, started: .now, outbox: self, traceContext: context
        ),
        outgoing: Link.Outgoing(id: record.id, text: record.text, traceContext: context),
        sequence: sequence
      )
    )
  }

  /// Takes in a request that another hub of the cluster accepted for `record.peer`, an agent
  /// connected here, and that this hub claimed in the shared store: it is written on the
  /// agent's link (and again on the next one) like this peer's own, and its reply recorded in
  /// the store (``resolve(_:)``) for the hub whose caller waits. Nobody here waits for it.
  ///
  /// - Returns: What to write, or `nil` when it is held already, past its deadline, or the
  ///   outbox closed.
  func adopt(_ record: OutgoingRecord) -> Accepted? {
    let now = Date().timeIntervalSince1970
    guard record.expiresAt > now else { return nil }
    let deadline = ContinuousClock.now.advanced(by: .clampedSeconds(record.expiresAt - now))
    let promise = Promise<Answer>()
    let sequence: UInt64? = self.state.withLock { state in
      if state.closedWith != nil || state.entries[record.id] != nil { return nil }
      state.nextSequence += 1
      state.entries[record.id] = Entry(record: record, deadline: deadline, promise: promise, sequence: state.nextSequence)
      state.queues[record.peer, default: Queue()].ids.append(record.id)
      state.queues[record.peer, default: Queue()].count += 1
      return state.nextSequence
    }
    guard let sequence else { return nil }
    return Accepted(
      delivery: Delivery(id: record.id, text: record.text, peer: record.peer, promise: promise, started: .now, outbox: self),
      outgoing: Link.Outgoing(id: record.id, text: record.text, traceContext: [:]),
      sequence: sequence
    )
  }

  /// Every request to `peer` still unanswered, in the order they were submitted, and the
  /// highest sequence among all accepted so far: what a new link to `peer` is owed.
  func pending(for peer: String) -> (outgoing: [Link.Outgoing], through: UInt64) {
    self.state.withLock { state in
      guard var queue = state.queues[peer] else { return ([], state.nextSequence) }
      queue.ids = queue.ids.filter { state.entries[$0] != nil }
      state.queues[peer] = queue
      let outgoing = queue.ids.compactMap { id in
        state.entries[id].map { Link.Outgoing(id: id, text: $0.record.text, traceContext: $0.trace?.context ?? [:]) }
      }
      return (outgoing, state.nextSequence)
    }
  }

  /// Called just before request `id` is written to a stream. Returns `false` when the request
  /// is no longer waiting (answered or expired meanwhile): it is not written.
  func willWrite(id: String) -> Bool {
    let written: (writes: Int, peer: String)? = self.state.withLock { state in
      guard state.entries[id] != nil else { return nil }
      state.entries[id]!.writes += 1
      return (state.entries[id]!.writes, state.entries[id]!.record.peer)
    }
    guard let written else { return false }
    if written.writes > 1 {
      self.resendCount.add(1, ordering: .relaxed)
      self.metrics?.resent(to: written.peer)
    }
    return true
  }

  /// Fails request `id` for what it is (the remote cannot take it): it is never written
  /// again, and leaves the store.
  func refuse(id: String, because error: PeerAgentError) {
    guard let entry = self.remove(id: id) else { return }
    self.ended(entry, .failed, code: "\(error.code)")
    entry.promise.complete(.failure(error))
  }

  /// Moves the requests queued under `placeholder` (a dialer's target, before its remote's
  /// name was known) to the remote's name.
  func rename(_ placeholder: String, to name: String) {
    guard placeholder != name else { return }
    let moved: Bool = self.state.withLock { state in
      guard var queue = state.queues.removeValue(forKey: placeholder) else { return false }
      for id in queue.ids { state.entries[id]?.record.peer = name }
      var target = state.queues[name, default: Queue()]
      target.ids += queue.ids
      target.count += queue.count
      target.spaceWaiters.append(contentsOf: &queue.spaceWaiters)
      state.queues[name] = target
      return true
    }
    if moved { self.store.renamePeer(placeholder, to: name) }
  }

  /// Whether request `id` is still waiting for its reply.
  func isWaiting(id: String) -> Bool {
    self.state.withLock { $0.entries[id] != nil }
  }

  /// Delivers a reply (``Answer/from`` set) to its request — only if it came from the remote
  /// the request was sent to: a reply from anyone else is dropped and counted
  /// (``misdirected``), whatever id it names.
  @discardableResult
  func resolve(_ answer: Answer) -> Resolution {
    var addressee: String?
    // The reply is kept in the store until the caller takes it (``settle(id:)``).
    let entry = self.remove(id: answer.id, forget: false) { entry in
      guard let from = answer.from, from.name != entry.record.peer else { return true }
      addressee = entry.record.peer
      return false
    }
    if let addressee {
      self.misdirectedCount.add(1, ordering: .relaxed)
      return .misdirected(addressee: addressee)
    }
    guard let entry else { return .notWaiting }
    self.store.recordAnswer(answer)
    let outcome: PeerMetrics.SentOutcome =
      answer.error == nil ? .replied : answer.code == "\(PeerAgentError.Code.outcomeUnknown)" ? .outcomeUnknown : .failed
    self.ended(entry, outcome, code: answer.code, roundTrip: .now - entry.started)
    entry.promise.complete(.success(answer))
    return .resolved
  }

  /// Replies dropped since the peer started because they did not come from their request's
  /// addressee.
  var misdirected: Int { self.misdirectedCount.load(ordering: .relaxed) }

  /// The caller has taken the reply to `id`: forget the request.
  func settle(id: String) {
    self.store.removeOutgoing(id: id)
  }

  /// Fails the requests whose deadline has passed, and the callers that waited for room until
  /// theirs.
  ///
  /// - Parameter connected: The remotes with a link now: a request to one of them that was not
  ///   written yet (a busy loop) did not fail for want of the peer.
  func expire(now: ContinuousClock.Instant, connected: Set<String>) {
    let (overdue, waiters): ([String], [WaiterQueue<Void>.Continuation]) = self.state.withLock { state in
      let ids = state.entries.filter { $0.value.deadline <= now }.map(\.key)
      var waiters: [WaiterQueue<Void>.Continuation] = []
      for peer in state.queues.keys where !state.queues[peer]!.spaceWaiters.isEmpty {
        waiters += state.queues[peer]!.spaceWaiters.removeExpired(at: now)
      }
      return (ids, waiters)
    }
    for id in overdue {
      guard let entry = self.remove(id: id) else { continue }
      let peer = entry.record.peer
      if entry.writes == 0 && !connected.contains(peer) {
        self.ended(entry, .unknownPeer)
        entry.promise.complete(
          .failure(PeerAgentError(code: .unknownPeer, message: "no peer named '\(peer)' connected before the deadline"))
        )
      } else {
        self.ended(entry, .timedOut)
        entry.promise.complete(
          .failure(PeerAgentError(code: .timedOut, message: "no reply from '\(peer)' to request \(id) before the deadline"))
        )
      }
    }
    for waiter in waiters {
      waiter.resume(
        throwing: PeerAgentError(code: .timedOut, message: "the window of unanswered requests stayed full until the deadline")
      )
    }
  }

  /// Fails every waiting caller with `error` and refuses new requests. The requests stay in
  /// a durable store, for the next run.
  func close(with error: any Error) {
    let (promises, waiters): ([Promise<Answer>], [WaiterQueue<Void>.Continuation]) = self.state.withLock { state in
      if state.closedWith == nil {
        for entry in state.entries.values { self.ended(entry, .shutdown) }
      }
      if state.closedWith == nil { state.closedWith = error }
      let promises = state.entries.values.map(\.promise)
      var waiters: [WaiterQueue<Void>.Continuation] = []
      for peer in state.queues.keys { waiters += state.queues[peer]!.spaceWaiters.removeAll() }
      return (promises, waiters)
    }
    for promise in promises { promise.complete(.failure(error)) }
    for waiter in waiters { waiter.resume(throwing: error) }
  }

  // MARK: - Private

  /// Reports how `entry` ended (``SentOutcomes``).
  private func ended(
    _ entry: Entry,
    _ outcome: PeerMetrics.SentOutcome,
    code: String? = nil,
    roundTrip: @autoclosure () -> Duration? = nil
  ) {
    self.outcomes.ended(peer: entry.record.peer, trace: entry.trace, outcome, code: code, roundTrip: roundTrip())
  }

  /// Removes request `id` — if `condition` holds for it, checked under the same lock.
  private func remove(id: String, forget: Bool = true, if condition: (Entry) -> Bool = { _ in true }) -> Entry? {
    let (entry, woken): (Entry?, WaiterQueue<Void>.Continuation?) = self.state.withLock { state in
      guard let entry = state.entries[id], condition(entry) else { return (nil, nil) }
      state.entries.removeValue(forKey: id)
      let peer = entry.record.peer
      state.queues[peer]?.count -= 1
      return (entry, self.takeWaiter(&state, peer: peer))
    }
    guard let entry else { return nil }
    woken?.resume()
    // A failure here means the request may be sent again after a restart; the receiver
    // answers a repeat from its window, so it is not handled twice.
    if forget { self.store.removeOutgoing(id: id) }
    return entry
  }

  /// Drops answered ids from `peer`'s order once they outnumber the live ones.
  private static func compact(_ state: inout State, peer: String) {
    guard let queue = state.queues[peer], queue.ids.count > 2 * queue.count + 64 else { return }
    state.queues[peer]!.ids = queue.ids.filter { state.entries[$0] != nil }
  }
}
