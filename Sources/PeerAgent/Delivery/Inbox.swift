private import Foundation
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
  private let retention: Duration
  private let capacity: Int
  private let handling = Mutex<[Key: [CheckedContinuation<ReplyBody, Never>]]>([:])
  private let repeatCount = Atomic<Int>(0)
  private let storeFailures = Atomic<Int>(0)

  init(store: any DeliveryStore, retention: Duration, capacity: Int) {
    self.store = store
    self.retention = retention
    self.capacity = capacity
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

    let first: Bool = self.handling.withLock { handling in
      if handling[key] != nil { return false }
      handling[key] = []
      return true
    }
    if !first {
      self.repeatCount.add(1, ordering: .relaxed)
      return await withCheckedContinuation { continuation in
        let ready: Bool = self.handling.withLock { handling in
          guard handling[key] != nil else { return true }
          handling[key]!.append(continuation)
          return false
        }
        // The first copy finished between the two looks: its reply is in the store now.
        if ready { continuation.resume(returning: self.stored(key) ?? ReplyBody(id: request.id, text: "", error: "the reply was lost")) }
      }
    }

    let reply: ReplyBody
    let isStored: Bool
    if let stored = self.stored(key) {
      self.repeatCount.add(1, ordering: .relaxed)
      reply = stored
      isStored = true
    } else {
      isStored = false
      reply = await perform(request)
    }
    if !isStored && !reply.wasCancelled {
      let record = StoredReply(text: reply.text, error: reply.error, recordedAt: Date().timeIntervalSince1970)
      do {
        try self.store.recordReply(record, to: key.id, from: key.sender)
      } catch {
        self.storeFailures.add(1, ordering: .relaxed)
      }
    }
    let waiters = self.handling.withLock { $0.removeValue(forKey: key) } ?? []
    for waiter in waiters { waiter.resume(returning: reply) }
    return reply
  }

  /// Forgets replies older than the retention, or beyond the capacity.
  func prune() {
    let cutoff = Date().timeIntervalSince1970 - Outbox.seconds(self.retention)
    try? self.store.pruneReplies(before: cutoff, keep: self.capacity)
  }

  private func stored(_ key: Key) -> ReplyBody? {
    guard let stored = try? self.store.reply(to: key.id, from: key.sender) else { return nil }
    return ReplyBody(id: key.id, text: stored.text, error: stored.error)
  }
}
