private import Foundation
private import Synchronization

/// The requests this peer sent and has not seen answered, per remote peer, and the windows
/// that bound them.
///
/// A request enters when ``submit(id:to:text:deadline:)`` has recorded it in the store (and,
/// for a durable store, on disk), and leaves when its reply arrives or its deadline passes. In
/// between it is written on the remote's current route and, whenever a new route to that
/// remote attaches (a reconnect), written again: at-least-once on the wire. A link going down
/// fails nothing.
///
/// Each remote has a window of ``window`` unanswered requests; ``submit(id:to:text:deadline:)``
/// waits for room (backpressure), until the request's deadline.
final class Outbox: Sendable {
  private struct Entry {
    var record: OutgoingRecord
    var deadline: ContinuousClock.Instant
    var promise: DeliveryPromise
    /// How many times the request was written to a stream.
    var writes = 0
  }

  private struct SpaceWaiter {
    var deadline: ContinuousClock.Instant
    var continuation: CheckedContinuation<Void, any Error>
  }

  /// One remote peer's requests, in the order they were submitted.
  private struct Queue {
    /// Ids in submission order; may hold ids already answered (skipped, compacted lazily).
    var ids: [String] = []
    /// Live entries, plus reservations of callers between waiting for room and recording.
    var count = 0
    var route: OutboundRoute?
    var spaceWaiters: [Int: SpaceWaiter] = [:]
  }

  private struct State {
    var entries: [String: Entry] = [:]
    var queues: [String: Queue] = [:]
    var nextWaiter = 0
    var closedWith: (any Error)?
  }

  let store: any DeliveryStore
  /// The most unanswered requests per remote peer.
  let window: Int
  /// Whether requests are recorded in the store: only in a durable one. In memory the outbox's
  /// own entries are the record, and a copy in an in-memory store would only cost time.
  private let recordsOutgoing: Bool
  private let state = Mutex(State())
  private let resendCount = Atomic<Int>(0)

  /// The largest request this peer sends, encoded.
  let maximumMessageBytes: Int

  init(store: any DeliveryStore, window: Int, maximumMessageBytes: Int = .max) {
    self.store = store
    self.window = max(1, window)
    self.recordsOutgoing = store.isDurable
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
        let promise = DeliveryPromise()
        if let answer = record.answer {
          // Answered before the restart, but the caller had not taken the reply: hand it over.
          let identity: PeerIdentity = answer.verified ? .verified(answer.from) : .unverified(address: answer.from)
          let body = ReplyBody(id: record.id, text: answer.text, error: answer.error, code: answer.code)
          promise.complete(.success(DeliveryPromise.Answer(body: body, from: identity)))
          return Delivery(
            id: record.id, text: record.text, peer: record.peer, promise: promise, started: start, outbox: self
          )
        }
        let size = WireSize.request(id: record.id, text: record.text)
        if size > self.maximumMessageBytes {
          // Accepted under a larger limit: it would never go through now. Failed, not resent.
          promise.complete(
            .failure(PeerAgentError.messageTooLarge(bytes: size, limit: self.maximumMessageBytes, whose: "this peer sends"))
          )
          return Delivery(
            id: record.id, text: record.text, peer: record.peer, promise: promise, started: start, outbox: self
          )
        }
        let remaining = Duration.milliseconds(Int64(max(0, record.expiresAt - now) * 1000))
        state.entries[record.id] = Entry(
          record: record,
          deadline: start.advanced(by: remaining),
          promise: promise,
          writes: 1  // it may have reached the remote before the restart
        )
        state.queues[record.peer, default: Queue()].ids.append(record.id)
        state.queues[record.peer, default: Queue()].count += 1
        return Delivery(
          id: record.id, text: record.text, peer: record.peer, promise: promise, started: start, outbox: self
        )
      }
    }
  }

  /// Accepts a request for `peer`: waits for room in its window, records it in the store, and
  /// writes it on the current route to `peer`, if there is one.
  ///
  /// - Returns: The delivery, once the request is recorded.
  /// - Throws: ``PeerAgentError``: `timedOut` (no room before `deadline`), `shuttingDown`,
  ///   `storageFailed`.
  func submit(
    id: String,
    to peer: String,
    text: String,
    deadline: ContinuousClock.Instant
  ) async throws -> Delivery {
    try await self.reserve(peer: peer, deadline: deadline)
    let remaining = deadline - .now
    let expiresAt = Date().timeIntervalSince1970 + Self.seconds(remaining)
    let record = OutgoingRecord(id: id, peer: peer, text: text, expiresAt: expiresAt)
    do {
      if self.recordsOutgoing { try self.store.recordOutgoing(record) }
    } catch {
      self.release(peer: peer)
      throw PeerAgentError(
        code: .storageFailed,
        message: "cannot record the request for '\(peer)': \(error)",
        cause: error
      )
    }
    let promise = DeliveryPromise()
    self.state.withLock { state in
      state.entries[id] = Entry(record: record, deadline: deadline, promise: promise)
      state.queues[peer, default: Queue()].ids.append(id)
      state.queues[peer]?.route?.enqueue(OutboundRoute.Outgoing(id: id, text: text))
      Self.compact(&state, peer: peer)
    }
    return Delivery(id: id, text: text, peer: peer, promise: promise, started: .now, outbox: self)
  }

  /// Makes `route` the way to its peer and writes on it every request still unanswered, in
  /// the order they were submitted.
  func attach(_ route: OutboundRoute) {
    let peer = route.identity.name
    self.state.withLock { state in
      var queue = state.queues[peer, default: Queue()]
      queue.route = route
      queue.ids = queue.ids.filter { state.entries[$0] != nil }
      for id in queue.ids {
        if let entry = state.entries[id] {
          route.enqueue(OutboundRoute.Outgoing(id: id, text: entry.record.text))
        }
      }
      state.queues[peer] = queue
    }
  }

  /// Stops writing on `route`, if it is still its peer's current route. Its requests stay.
  func detach(_ route: OutboundRoute) {
    self.state.withLock { state in
      if state.queues[route.identity.name]?.route === route {
        state.queues[route.identity.name]?.route = nil
      }
    }
  }

  /// Called just before request `id` is written to a stream. Returns `false` when the request
  /// is no longer waiting (answered or expired meanwhile): it is not written.
  func willWrite(id: String) -> Bool {
    let writes: Int? = self.state.withLock { state in
      guard state.entries[id] != nil else { return nil }
      state.entries[id]!.writes += 1
      return state.entries[id]!.writes
    }
    guard let writes else { return false }
    if writes > 1 { self.resendCount.add(1, ordering: .relaxed) }
    return true
  }

  /// Fails request `id` for what it is (the remote cannot take it): it is never written
  /// again, and leaves the store.
  func refuse(id: String, because error: PeerAgentError) {
    self.remove(id: id)?.promise.complete(.failure(error))
  }

  /// Moves the requests queued under `placeholder` (a dialer's target, before its remote's
  /// name was known) to the remote's name.
  func rename(_ placeholder: String, to name: String) {
    guard placeholder != name else { return }
    let moved: Bool = self.state.withLock { state in
      guard let queue = state.queues.removeValue(forKey: placeholder) else { return false }
      for id in queue.ids { state.entries[id]?.record.peer = name }
      var target = state.queues[name, default: Queue()]
      target.ids += queue.ids
      target.count += queue.count
      target.spaceWaiters.merge(queue.spaceWaiters) { first, _ in first }
      state.queues[name] = target
      return true
    }
    if moved, self.recordsOutgoing { try? self.store.renamePeer(placeholder, to: name) }
  }

  /// Whether request `id` is still waiting for its reply.
  func isWaiting(id: String) -> Bool {
    self.state.withLock { $0.entries[id] != nil }
  }

  /// Delivers a reply to its request. Returns `false` when no request waits for it (a late or
  /// repeated reply).
  @discardableResult
  func resolve(_ reply: ReplyBody, from identity: PeerIdentity) -> Bool {
    // The reply is kept in the store until the caller takes it (``settle(id:)``).
    guard let entry = self.remove(id: reply.id, forget: false) else { return false }
    let answer = StoredAnswer(
      from: identity.name,
      verified: identity.isVerified,
      text: reply.text,
      error: reply.error,
      code: reply.code
    )
    if self.recordsOutgoing { try? self.store.recordAnswer(answer, to: reply.id) }
    entry.promise.complete(.success(DeliveryPromise.Answer(body: reply, from: identity)))
    return true
  }

  /// The caller has taken the reply to `id`: forget the request.
  func settle(id: String) {
    if self.recordsOutgoing { try? self.store.removeOutgoing(id: id) }
  }

  /// Fails the requests whose deadline has passed, and the callers that waited for room until
  /// theirs.
  func expire(now: ContinuousClock.Instant) {
    let (overdue, waiters, routed): ([String], [SpaceWaiter], Set<String>) = self.state.withLock { state in
      let ids = state.entries.filter { $0.value.deadline <= now }.map(\.key)
      // The remotes with a route now: a request to one of them that was not written yet (a
      // busy loop) did not fail for want of the peer.
      let routed = Set(state.queues.filter { $0.value.route != nil }.keys)
      var waiters: [SpaceWaiter] = []
      for peer in state.queues.keys {
        for (key, waiter) in state.queues[peer]!.spaceWaiters where waiter.deadline <= now {
          waiters.append(waiter)
          state.queues[peer]!.spaceWaiters.removeValue(forKey: key)
        }
      }
      return (ids, waiters, routed)
    }
    for id in overdue {
      guard let entry = self.remove(id: id) else { continue }
      let peer = entry.record.peer
      if entry.writes == 0 && !routed.contains(peer) {
        entry.promise.complete(
          .failure(
            PeerAgentError(code: .unknownPeer, message: "no peer named '\(peer)' connected before the deadline")
          )
        )
      } else {
        entry.promise.complete(
          .failure(
            PeerAgentError(code: .timedOut, message: "no reply from '\(peer)' to request \(id) before the deadline")
          )
        )
      }
    }
    for waiter in waiters {
      waiter.continuation.resume(
        throwing: PeerAgentError(
          code: .timedOut,
          message: "the window of unanswered requests stayed full until the deadline"
        )
      )
    }
  }

  /// Fails every waiting caller with `error` and refuses new requests. The requests stay in
  /// a durable store, for the next run.
  func close(with error: any Error) {
    let (promises, waiters): ([DeliveryPromise], [SpaceWaiter]) = self.state.withLock { state in
      if state.closedWith == nil { state.closedWith = error }
      let promises = state.entries.values.map(\.promise)
      let waiters = state.queues.values.flatMap { $0.spaceWaiters.values }
      for peer in state.queues.keys { state.queues[peer]!.spaceWaiters.removeAll() }
      return (promises, waiters)
    }
    for promise in promises { promise.complete(.failure(error)) }
    for waiter in waiters { waiter.continuation.resume(throwing: error) }
  }

  // MARK: - Private

  private func remove(id: String, forget: Bool = true) -> Entry? {
    let (entry, woken): (Entry?, SpaceWaiter?) = self.state.withLock { state in
      guard let entry = state.entries.removeValue(forKey: id) else { return (nil, nil) }
      let peer = entry.record.peer
      state.queues[peer]?.count -= 1
      return (entry, self.takeWaiter(&state, peer: peer))
    }
    guard let entry else { return nil }
    woken?.continuation.resume()
    // A failure here means the request may be sent again after a restart; the receiver
    // answers a repeat from its window, so it is not handled twice.
    if forget, self.recordsOutgoing { try? self.store.removeOutgoing(id: id) }
    return entry
  }

  /// Waits for room in `peer`'s window and takes it.
  private func reserve(peer: String, deadline: ContinuousClock.Instant) async throws {
    let key = self.state.withLock { state -> Int in
      state.nextWaiter += 1
      return state.nextWaiter
    }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let outcome: Result<Void, any Error>? = self.state.withLock { state in
          if let error = state.closedWith { return .failure(error) }
          if Task.isCancelled { return .failure(CancellationError()) }
          var queue = state.queues[peer, default: Queue()]
          defer { state.queues[peer] = queue }
          if queue.count < self.window && queue.spaceWaiters.isEmpty {
            queue.count += 1
            return .success(())
          }
          queue.spaceWaiters[key] = SpaceWaiter(deadline: deadline, continuation: continuation)
          return nil
        }
        if let outcome { continuation.resume(with: outcome) }
      }
    } onCancel: {
      let waiter = self.state.withLock { $0.queues[peer]?.spaceWaiters.removeValue(forKey: key) }
      waiter?.continuation.resume(throwing: CancellationError())
    }
  }

  private func release(peer: String) {
    let woken = self.state.withLock { state -> SpaceWaiter? in
      state.queues[peer]?.count -= 1
      return self.takeWaiter(&state, peer: peer)
    }
    woken?.continuation.resume()
  }

  /// Hands the room just freed in `peer`'s window to the longest waiting caller, if any.
  private func takeWaiter(_ state: inout State, peer: String) -> SpaceWaiter? {
    guard var queue = state.queues[peer], queue.count < self.window,
      let key = queue.spaceWaiters.keys.min()
    else { return nil }
    let waiter = queue.spaceWaiters.removeValue(forKey: key)
    queue.count += 1
    state.queues[peer] = queue
    return waiter
  }

  /// Drops answered ids from `peer`'s order once they outnumber the live ones.
  private static func compact(_ state: inout State, peer: String) {
    guard let queue = state.queues[peer], queue.ids.count > 2 * queue.count + 64 else { return }
    state.queues[peer]!.ids = queue.ids.filter { state.entries[$0] != nil }
  }

  static func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
  }
}
