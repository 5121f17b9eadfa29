private import Foundation
internal import Logging
private import Synchronization

/// The receiving side of every request: the handler runs once per request id, and a repeat of
/// an id (the sender resent it after a reconnect or a restart) gets the reply already given,
/// from the store's de-duplication window, without calling the handler again.
///
/// A repeat that arrives while the first copy is still being handled waits for that copy's
/// reply. Requests without an id (older peers) are handled every time they arrive.
final class Inbox: Sendable {
  private struct Key: Hashable {
    var sender: String
    var id: String
  }

  private let store: any DeliveryStore
  private let handler: Peer.Handler
  private let atMostOnce: Bool
  private let retention: Duration
  private let bounds: WindowBounds
  private let logger: Logger
  /// Evictions already logged.
  private let evictionsLogged = Atomic<Int>(0)
  /// One id being handled now.
  private struct Handling {
    /// The reply its repeats wait for (`nil`: the first copy ended without one — it was
    /// cancelled — and a repeat handles the request itself); made when the first repeat comes.
    var reply: Promise<Answer?>?
  }

  /// The ids being handled now.
  private let handling = Mutex<[Key: Handling]>([:])
  private let inFlightCount = Atomic<Int>(0)
  private let repeatCount = Atomic<Int>(0)
  private let metrics: PeerMetrics?
  private let tracing: PeerTracing?
  private let outcomeUnknownCount = Atomic<Int>(0)

  init(
    store: any DeliveryStore,
    handling: Peer.Config.Delivery.Handling = .atLeastOnce,
    retention: Duration,
    bounds: WindowBounds,
    metrics: PeerMetrics? = nil,
    tracing: PeerTracing? = nil,
    logger: Logger,
    handler: @escaping Peer.Handler = { _ in "" }
  ) {
    self.metrics = metrics
    self.tracing = tracing
    self.store = store
    self.handler = handler
    self.atMostOnce = handling == .atMostOnce
    self.retention = retention
    self.bounds = bounds
    self.logger = logger
  }

  /// Repeats answered from the window since the peer started.
  var repeats: Int { self.repeatCount.load(ordering: .relaxed) }

  /// Repeats answered `outcomeUnknown` since the peer started (at-most-once).
  var outcomesUnknown: Int { self.outcomeUnknownCount.load(ordering: .relaxed) }

  /// Requests being handled now (a graceful shutdown waits for them).
  var inFlight: Int { self.inFlightCount.load(ordering: .relaxed) }

  /// Handles one request from a remote with the peer's handler, exactly once per id. Returns
  /// the reply to write, or `nil` when there is none to write: the handler was cancelled (its
  /// stream went away), and the sender, still waiting, resends the request on its next link,
  /// where it is handled afresh.
  func receive(_ request: IncomingRequest) async -> Answer? {
    self.inFlightCount.add(1, ordering: .relaxed)
    defer { self.inFlightCount.subtract(1, ordering: .relaxed) }
    return await self.handle(request) { request in await self.callHandler(request) }
  }

  /// Handles `request` once: calls `perform` for a new id and records its reply; answers a
  /// repeat with the recorded reply. `perform` returns `nil` when it was cancelled.
  func handle(
    _ request: IncomingRequest,
    perform: (IncomingRequest) async -> Answer?
  ) async -> Answer? {
    guard !request.id.isEmpty else { return await perform(request) }
    // Verified peers are keyed by their name; in plaintext the name is an address that changes
    // with every connection, so the id alone is the key.
    let key = Key(sender: request.from.isVerified ? request.from.name : "", id: request.id)
    while true {
      let repeated: Promise<Answer?>? = self.handling.withLock { handling in
        guard handling[key] != nil else {
          handling[key] = Handling()
          return nil
        }
        if let reply = handling[key]!.reply { return reply }
        let reply = Promise<Answer?>()
        handling[key]!.reply = reply
        return reply
      }
      guard let reply = repeated else { return await self.handleFirst(request, key: key, perform: perform) }
      // A copy of this request is being handled: wait for its reply.
      let shared: Answer?
      do {
        shared = try await reply.wait()
      } catch {
        return nil  // this copy's stream went away
      }
      if let shared {
        self.repeatCount.add(1, ordering: .relaxed)
        self.metrics?.repeated(from: request.from.name)
        return shared
      }
      // The first copy ended without a reply: handle it as a first copy.
    }
  }

  /// Answers from the window, else calls `perform` and records its reply (unless it was
  /// cancelled: a later copy is then handled afresh — or, at most once, answered
  /// `outcomeUnknown`); hands the reply to the waiting repeats.
  private func handleFirst(
    _ request: IncomingRequest,
    key: Key,
    perform: (IncomingRequest) async -> Answer?
  ) async -> Answer? {
    let answer = await self.answer(request, key: key, perform: perform)
    let repeats = self.handling.withLock { $0.removeValue(forKey: key)?.reply }
    repeats?.complete(.success(answer))
    return answer
  }

  /// The answer to the first copy of `key` in this process: the window's, else — its
  /// acceptance recorded first, at most once — the handler's.
  private func answer(
    _ request: IncomingRequest,
    key: Key,
    perform: (IncomingRequest) async -> Answer?
  ) async -> Answer? {
    var entry = try? await self.store.windowEntry(for: key.id, from: key.sender)
    if entry == nil, self.atMostOnce {
      switch await self.recordAcceptance(key) {
      case .recorded:
        break
      case .refused(let refusal):
        self.metrics?.handled(from: request.from.name, .refused)
        return refusal
      case .takenElsewhere:
        // Another hub accepted it first: its entry (waited for while it handles it) is the answer.
        entry = (try? await self.store.windowEntry(for: key.id, from: key.sender)) ?? .accepted
      }
    }
    switch entry {
    case .answered(let recorded):
      self.repeatCount.add(1, ordering: .relaxed)
      self.metrics?.repeated(from: request.from.name)
      return recorded
    case .accepted:
      self.repeatCount.add(1, ordering: .relaxed)
      self.metrics?.repeated(from: request.from.name)
      self.metrics?.handled(from: request.from.name, .refused)
      self.outcomeUnknownCount.add(1, ordering: .relaxed)
      return .refusal(
        of: key.id,
        .outcomeUnknown,
        "request \(key.id) was accepted before an interruption and may or may not have been handled; with at-most-once handling it is not handled again"
      )
    case nil:
      let answer = await perform(request)
      if let answer { await self.record(answer, key: key) }
      return answer
    }
  }

  /// Records `answer` in the window; returns once it is recorded, so that the reply is sent
  /// only then.
  private func record(_ answer: Answer, key: Key) async {
    do {
      try await self.store.recordReply(answer, from: key.sender, at: Date().timeIntervalSince1970)
    } catch {
      self.logger.error(
        "cannot record a reply: a repeat of this request would be handled again",
        metadata: ["id": "\(key.id)", "error": "\(error)"]
      )
    }
  }

  /// What became of recording an acceptance.
  private enum Acceptance {
    /// Recorded: the handler may run.
    case recorded
    /// Not recorded: this reply goes back instead of running the handler.
    case refused(Answer)
    /// Another hub of the cluster recorded it first.
    case takenElsewhere
  }

  /// Records, before the handler runs, that `key` was accepted (at-most-once).
  private func recordAcceptance(_ key: Key) async -> Acceptance {
    do {
      let recorded = try await self.store.claimAcceptance(of: key.id, from: key.sender, at: Date().timeIntervalSince1970)
      return recorded ? .recorded : .takenElsewhere
    } catch {
      self.logger.error(
        "cannot record the acceptance of a request: not handled (at-most-once)",
        metadata: ["id": "\(key.id)", "error": "\(error)"]
      )
      // The store's error (SQL, paths) stays in this log: no internal detail crosses a link.
      return .refused(.refusal(of: key.id, .storageFailed, "the receiver cannot record the request before handling it (its store failed; see its log)"))
    }
  }

  /// Calls the handler — in its `handle` span when tracing, so that what it logs and sends
  /// belongs to the request's trace.
  private func callHandler(_ request: IncomingRequest) async -> Answer? {
    guard let tracing = self.tracing else { return await self.runHandler(request) }
    return await tracing.handle(request, failure: { $0?.error }) { await self.runHandler(request) }
  }

  private func runHandler(_ request: IncomingRequest) async -> Answer? {
    do {
      let text = try await self.handler(request)
      self.metrics?.handled(from: request.from.name, .ok)
      return Answer(id: request.id, text: text)
    } catch {
      let logger = self.logger.forLink(request.from)
      if error is CancellationError || Task.isCancelled {
        self.metrics?.handled(from: request.from.name, .cancelled)
        logger.debug("handler cancelled: its stream went away", metadata: ["id": "\(request.id)"])
        return nil
      }
      self.metrics?.handled(from: request.from.name, .failed)
      logger.warning("handler failed", metadata: ["id": "\(request.id)", "error": "\(error)"])
      return Answer(id: request.id, text: "", error: "\(error)")
    }
  }

  /// Forgets replies older than the retention, or beyond the bounds; logs the evictions since
  /// the last prune, once.
  func prune() async {
    let cutoff = Date().timeIntervalSince1970 - self.retention.seconds
    try? await self.store.pruneReplies(before: cutoff, bounds: self.bounds)
    let evictions = self.store.windowEvictions
    let logged = self.evictionsLogged.exchange(evictions, ordering: .relaxed)
    if evictions > logged {
      self.logger.warning(
        "the de-duplication window is full: forgot replies before their retention ended; a repeat of one of them would be handled again",
        metadata: [
          "evicted": "\(evictions - logged)",
          "window.bytes": "\(self.bounds.bytes)",
          "window.bytesPerSender": "\(self.bounds.bytesPerSender)",
          "window.count": "\(self.bounds.count)",
        ]
      )
    }
  }
}
