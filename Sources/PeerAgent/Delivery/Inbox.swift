private import Foundation
internal import Logging
private import Synchronization

/// The receiving side of exactly-once handling: the handler runs once per request id, and a
/// repeat of an id (the sender resent it after a reconnect or a restart) gets the reply already
/// given, from the store's de-duplication window, without calling the handler again.
///
/// A repeat that arrives while the first copy is still being handled waits for that copy's
/// reply. Requests without an id (older peers) are handled every time they arrive.
final class Inbox: Sendable {
  private struct Key: Hashable {
    var sender: String
    var id: String
  }

  private let store: any DeliveryStore
  private let atMostOnce: Bool
  private let retention: Duration
  private let capacity: Int
  private let logger: Logger
  /// The ids being handled now, with the repeats waiting for their reply (`nil`: the first
  /// copy ended without one — it was cancelled — and the repeat handles the request itself).
  private let handling = Mutex<[Key: [CheckedContinuation<ReplyBody?, Never>]]>([:])
  private let repeatCount = Atomic<Int>(0)
  private let outcomeUnknownCount = Atomic<Int>(0)

  init(
    store: any DeliveryStore,
    handling: Peer.Config.Delivery.Handling = .atLeastOnce,
    retention: Duration,
    capacity: Int,
    logger: Logger
  ) {
    self.store = store
    self.atMostOnce = handling == .atMostOnce
    self.retention = retention
    self.capacity = capacity
    self.logger = logger
  }

  /// Repeats answered from the window since the peer started.
  var repeats: Int { self.repeatCount.load(ordering: .relaxed) }

  /// Handles `request` once: calls `perform` for a new id and records its reply; answers a
  /// repeat with the recorded reply.
  func handle(
    _ request: IncomingRequest,
    perform: (IncomingRequest) async -> ReplyBody
  ) async -> ReplyBody {
    guard !request.id.isEmpty else { return await perform(request) }
    // Verified peers are keyed by their name; in plaintext the name is an address that changes
    // with every connection, so the id alone is the key.
    let sender = request.from.isVerified ? request.from.name : ""
    let key = Key(sender: sender, id: request.id)

    while true {
      let first: Bool = self.handling.withLock { handling in
        if handling[key] != nil { return false }
        handling[key] = []
        return true
      }
      if first { return await self.handleFirst(request, key: key, perform: perform) }
      // A copy of this request is being handled: wait for its reply.
      let reply: ReplyBody? = await withCheckedContinuation { continuation in
        let waiting: Bool = self.handling.withLock { handling in
          guard handling[key] != nil else { return false }
          handling[key]!.append(continuation)
          return true
        }
        // It ended between the two looks: look again, as a first copy.
        if !waiting { continuation.resume(returning: nil) }
      }
      if let reply {
        self.repeatCount.add(1, ordering: .relaxed)
        return reply
      }
    }
  }

  /// Answers from the window, else calls `perform` and records its reply (unless it was
  /// cancelled: a later copy is then handled afresh — or, at most once, answered
  /// `outcomeUnknown`); hands the reply to the waiting repeats.
  private func handleFirst(
    _ request: IncomingRequest,
    key: Key,
    perform: (IncomingRequest) async -> ReplyBody
  ) async -> ReplyBody {
    let reply: ReplyBody
    if let stored = try? self.store.reply(to: key.id, from: key.sender) {
      self.repeatCount.add(1, ordering: .relaxed)
      if stored.isPending {
        self.outcomeUnknownCount.add(1, ordering: .relaxed)
        reply = ReplyBody(
          id: key.id,
          text: "",
          error: "request \(key.id) was accepted before an interruption and may or may not have been handled; with at-most-once handling it is not handled again",
          code: "\(PeerAgentError.Code.outcomeUnknown)"
        )
      } else {
        reply = ReplyBody(id: key.id, text: stored.text, error: stored.error)
      }
    } else if self.atMostOnce, let refusal = self.recordAcceptance(key) {
      reply = refusal
    } else {
      reply = await perform(request)
      if !reply.wasCancelled {
        let record = StoredReply(text: reply.text, error: reply.error, recordedAt: Date().timeIntervalSince1970)
        do {
          try self.store.recordReply(record, to: key.id, from: key.sender)
        } catch {
          self.logger.error(
            "cannot record a reply: a repeat of this request would be handled again",
            metadata: ["id": "\(key.id)", "error": "\(error)"]
          )
        }
      }
    }
    let waiters = self.handling.withLock { $0.removeValue(forKey: key) } ?? []
    let shared = reply.wasCancelled ? nil : reply
    for waiter in waiters { waiter.resume(returning: shared) }
    return reply
  }

  /// Records, before the handler runs, that `key` was accepted (at-most-once). Returns the
  /// reply to give instead of running the handler when that cannot be recorded.
  private func recordAcceptance(_ key: Key) -> ReplyBody? {
    do {
      try self.store.recordAcceptance(of: key.id, from: key.sender, at: Date().timeIntervalSince1970)
      return nil
    } catch {
      self.logger.error(
        "cannot record the acceptance of a request: not handled (at-most-once)",
        metadata: ["id": "\(key.id)", "error": "\(error)"]
      )
      return ReplyBody(
        id: key.id,
        text: "",
        error: "the receiver cannot record the request before handling it: \(error)",
        code: "\(PeerAgentError.Code.storageFailed)"
      )
    }
  }

  /// Repeats answered `outcomeUnknown` since the peer started (at-most-once).
  var outcomesUnknown: Int { self.outcomeUnknownCount.load(ordering: .relaxed) }

  /// Forgets replies older than the retention, or beyond the capacity.
  func prune() {
    let cutoff = Date().timeIntervalSince1970 - Outbox.seconds(self.retention)
    try? self.store.pruneReplies(before: cutoff, keep: self.capacity)
  }
}
