private import Synchronization

/// Each remote's window of unanswered requests: a caller waits for room, takes it, and hands
/// it on when its request leaves.
extension Outbox {
  /// Waits for room in `peer`'s window and takes it.
  func reserve(peer: String, deadline: ContinuousClock.Instant) async throws {
    if try self.reserveNow(peer: peer) { return }
    try await WaiterQueue<Void>.suspend { key, continuation in
      self.state.withLock { state in
        if let error = state.closedWith { return .failure(error) }
        if Task.isCancelled { return .failure(CancellationError()) }
        var queue = state.queues[peer, default: Queue()]
        defer { state.queues[peer] = queue }
        if queue.count < self.window && queue.spaceWaiters.isEmpty {
          queue.count += 1
          return .success(())
        }
        queue.spaceWaiters.append(key, continuation, deadline: deadline)
        return nil
      }
    } onCancel: { key in
      // Looked for under every name: a rename may have moved it.
      self.state.withLock { state in
        for name in state.queues.keys {
          if let waiter = state.queues[name]!.spaceWaiters.remove(key) { return waiter }
        }
        return nil
      }
    }
  }

  /// Takes room in `peer`'s window if there is some now, without suspending: the usual case.
  func reserveNow(peer: String) throws -> Bool {
    try self.state.withLock { state in
      if let error = state.closedWith { throw error }
      if Task.isCancelled { throw CancellationError() }
      var queue = state.queues[peer, default: Queue()]
      guard queue.count < self.window, queue.spaceWaiters.isEmpty else { return false }
      queue.count += 1
      state.queues[peer] = queue
      return true
    }
  }

  func release(peer: String) {
    let woken = self.state.withLock { state in
      state.queues[peer]?.count -= 1
      return self.takeWaiter(&state, peer: peer)
    }
    woken?.resume()
  }

  /// The remotes with a queue (tests: none is left once their requests are answered).
  var queueCount: Int { self.state.withLock { $0.queues.count } }

  /// Hands the room just freed in `peer`'s window to the longest waiting caller, if any; forgets
  /// the queue once nothing is in it nor waiting for it (remotes come and go — in plaintext
  /// each connection is one — and none leaves anything behind).
  func takeWaiter(_ state: inout State, peer: String) -> WaiterQueue<Void>.Continuation? {
    guard var queue = state.queues[peer], queue.count < self.window, let waiter = queue.spaceWaiters.popFirst() else {
      if let queue = state.queues[peer], queue.count <= 0, queue.spaceWaiters.isEmpty { state.queues[peer] = nil }
      return nil
    }
    queue.count += 1
    state.queues[peer] = queue
    return waiter
  }
}
