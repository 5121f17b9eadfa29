internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging
private import Synchronization

/// A single-channel dialer's session: `sendStatus` (this peer's requests), and `getTask` (the
/// remote's requests, pushed) with `tellResult` (this peer's replies to them) — all on one
/// connection, so that only the listener needs to be reachable.
struct SingleChannelSession: DialerSession {
  let setup: SessionSetup

  var streams: [@Sendable () async throws -> Void] {
    let sendStatus = SendStatusStream(setup: self.setup)
    return [{ try await sendStatus.run() }, { try await self.pushedRequests() }]
  }

  /// How many replies `tellResult` has written: the flush after `getTask` ends goes on while
  /// this moves.
  final class Progress: Sendable {
    private let value = Atomic<Int>(0)
    private let flushed = Atomic<Bool>(false)
    var count: Int { self.value.load(ordering: .relaxed) }
    /// Whether every reply was written and the stream half-closed.
    var isFlushed: Bool { self.flushed.load(ordering: .relaxed) }
    func add(_ count: Int) { self.value.add(count, ordering: .relaxed) }
    func markFlushed() { self.flushed.store(true, ordering: .relaxed) }
  }

  /// How one of the two inbound streams ended.
  private enum InboundEnd: Sendable {
    case getTask(String)
    case tellResult(String)
    case flushTimedOut
  }

  /// The remote's requests, pushed on `getTask`, and this peer's replies on `tellResult`.
  /// Throws when either stream ends.
  ///
  /// When `getTask` ends — cleanly or not — every reply to a task already received is still
  /// written on `tellResult`, which is then half-closed, never cancelled with replies pending
  /// (within the heartbeat timeout); the session then ends and the dialer opens both again
  /// after its backoff.
  private func pushedRequests() async throws {
    let results = WriteQueue<Contact_Result>()
    let budget = ReplyBudget(self.setup.context.config.limits)
    let written = Progress()
    let end = try await withThrowingTaskGroup(of: InboundEnd.self) { pair in
      pair.addTask { await self.tellResult(writing: results, budget: budget, progress: written) }
      pair.addTask {
        // Every handler has returned (and queued its reply) before getTask returns.
        defer { results.finish() }
        do {
          try await self.receiveTasks(replyingTo: results, budget: budget)
          self.setup.ends(because: "the remote ended getTask")
          return .getTask("the remote ended getTask")
        } catch {
          self.setup.noteRefusal(error)
          let reason = "getTask failed: \(Self.describe(error))"
          self.setup.ends(because: reason)
          return .getTask(reason)
        }
      }
      defer { pair.cancelAll() }
      guard let first = try await pair.next() else { return InboundEnd.getTask("getTask ended") }
      guard case .getTask = first else { return first }
      // Let tellResult write what is queued and half-close; it returns once the remote
      // answers the half-close. Given up only when replies are left and none was written for
      // a heartbeat timeout: a remote that reads its replies slowly gets every one of them (a
      // fixed 6 s bound cut tellResult short: 0 of 5 runs whole against a server reading one
      // acknowledgement per 20 ms, held-out runs 349 and 494 of 500).
      pair.addTask {
        let quiet = self.setup.context.config.health.heartbeatTimeout
        var seen = written.count
        while true {
          try await Task.sleep(for: quiet)
          // Everything written and half-closed: the remote's answer ends tellResult, however
          // slowly it reads (the connection's keepalive ends a dead one).
          if written.isFlushed { continue }
          let now = written.count
          if now == seen { return .flushTimedOut }
          seen = now
        }
      }
      if case .flushTimedOut = try await pair.next() {
        self.setup.context.logger.warning(
          "tellResult did not finish after getTask ended: replies still queued are sent again when the remote resends their requests"
        )
      }
      return first
    }
    switch end {
    case .getTask(let reason), .tellResult(let reason):
      throw Dialer.SessionEnded(reason: reason)
    case .flushTimedOut:
      throw Dialer.SessionEnded(reason: "getTask ended")
    }
  }

  /// What ended a stream: the RPC's code and message (a message over the limit is
  /// `resourceExhausted`), else the root cause.
  private static func describe(_ error: any Error) -> String {
    if let rpc = error as? RPCError, rpc.code == .resourceExhausted {
      return "resourceExhausted: \(rpc.message)"
    }
    return ErrorChain.rootCause(error)
  }

  /// Writes the replies queued in `results` on `tellResult` until the queue ends.
  private func tellResult(writing results: WriteQueue<Contact_Result>, budget: ReplyBudget, progress: Progress) async -> InboundEnd {
    do {
      try await self.setup.contact.tellResult(
        metadata: self.setup.context.announcement,
        options: self.setup.options,
        requestProducer: { writer in
          while let batch = await results.next() {
            try await writer.write(contentsOf: batch)
            budget.written(batch)
            progress.add(batch.count)
          }
          progress.markFlushed()
        }
      ) { response in
        _ = try response.message
      }
      return .tellResult("the remote ended tellResult")
    } catch {
      self.setup.noteRefusal(error)
      let reason = "tellResult failed: \(Self.describe(error))"
      self.setup.ends(because: reason)
      return .tellResult(reason)
    }
  }

  /// Hands every task pushed on `getTask` to the inbox, replies queued on `results`.
  private func receiveTasks(replyingTo results: WriteQueue<Contact_Result>, budget: ReplyBudget) async throws {
    let setup = self.setup
    let health = setup.getTaskHealth
    if setup.remote.isKnownToHeartbeat { health.arm() }
    try await setup.contact.getTask(Contact_Empty(), metadata: setup.context.announcement, options: setup.options) {
      response in
      if case .failure(let error) = response.accepted {
        setup.noteRefusal(error)
        throw error
      }
      setup.connected.set()
      let inbound = InboundRequests(context: setup.context, identity: setup.identity(), link: .getTask, budget: budget) { result in
        results.enqueue(result)
      }
      try await withThrowingDiscardingTaskGroup { handlers in
        _ = try await setup.read(response) { task in
          let message = task.inbound
          if message.isHeartbeat {
            setup.remote.isKnownToHeartbeat = true
            health.arm()
          } else {
            health.heard()
          }
          try await inbound.receive(message, in: &handlers)
        }
      }
    }
  }
}
