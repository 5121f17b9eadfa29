/// The values the outbox keeps and hands out, and where the end of each request is reported.
extension Outbox {
  /// One unanswered request.
  struct Entry {
    var record: OutgoingRecord
    var deadline: ContinuousClock.Instant
    var promise: Promise<Answer>
    var sequence: UInt64
    /// How many times the request was written to a stream.
    var writes = 0
    /// When it was accepted (or recovered after a restart).
    var started = ContinuousClock.now
    /// Its `send` span and the trace context it carries, when tracing.
    var trace: OutgoingTrace?
  }

  /// One remote peer's requests, in the order they were submitted.
  struct Queue {
    /// Ids in submission order; may hold ids already answered (skipped, compacted lazily).
    var ids: [String] = []
    /// Live entries, plus reservations of callers between waiting for room and recording.
    var count = 0
    var spaceWaiters = WaiterQueue<Void>()
  }

  /// What ``Outbox`` holds under its lock (the value; the lock and its use stay private).
  struct State {
    var entries: [String: Entry] = [:]
    var queues: [String: Queue] = [:]
    var nextSequence: UInt64 = 0
    var closedWith: (any Error)?
  }

  /// A request accepted into the outbox, to be written on its remote's link.
  struct Accepted: Sendable {
    /// The caller's handle on it.
    var delivery: Delivery
    /// The request as it goes on the wire.
    var outgoing: Link.Outgoing
    /// Its place in the order of acceptance, for ``LinkTable/write(_:sequence:to:)``.
    var sequence: UInt64
  }

  /// What became of a reply handed to ``resolve(_:)``.
  enum Resolution: Sendable, Hashable {
    /// It answered its request.
    case resolved
    /// No request waits for it: a late or repeated reply.
    case notWaiting
    /// It came from someone other than the remote its request was sent to: dropped, and the
    /// request still waits for its addressee's reply.
    case misdirected(addressee: String)
  }
}

/// The one place where the end of each of this peer's requests is reported, whatever ended
/// it (a reply, its deadline, a refusal, the shutdown): the metrics' counters and round trip,
/// and the request's `send` span.
struct SentOutcomes: Sendable {
  let metrics: PeerMetrics?

  /// `code` is the failure's ``PeerAgentError/Code`` name, where the outcome alone does not
  /// say it (a remote's refusal).
  func ended(
    peer: String,
    trace: OutgoingTrace?,
    _ outcome: PeerMetrics.SentOutcome,
    code: String? = nil,
    roundTrip: @autoclosure () -> Duration? = nil
  ) {
    if let metrics = self.metrics { metrics.sent(to: peer, outcome, roundTrip: roundTrip()) }
    trace?.end(failure: outcome == .replied ? nil : code ?? outcome.code)
  }
}

extension PeerMetrics.SentOutcome {
  /// The ``PeerAgentError/Code`` name a request that ended so fails with.
  var code: String {
    switch self {
    case .replied: ""
    case .failed: "\(PeerAgentError.Code.remoteHandlerFailed)"
    case .timedOut: "\(PeerAgentError.Code.timedOut)"
    case .unknownPeer: "\(PeerAgentError.Code.unknownPeer)"
    case .outcomeUnknown: "\(PeerAgentError.Code.outcomeUnknown)"
    case .shutdown: "\(PeerAgentError.Code.shuttingDown)"
    }
  }
}
