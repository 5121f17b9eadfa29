/// Where a peer keeps what it must not lose: the requests it sent that are not answered yet
/// (its outbox), and the replies it gave recently (its de-duplication window).
///
/// The seam between the delivery machinery and storage: the embedded SQLite store
/// (``SQLiteDeliveryStore``) and the in-memory one (``InMemoryDeliveryStore``) are used by the
/// same code path, and a peer can be given any other implementation
/// (``Peer/init(config:store:logger:handler:)``), such as a database shared by several hubs.
///
/// Calls are short (one statement each) and made outside the peer's locks; writes are queued
/// or awaited as each says, and only ``unansweredOutgoing()`` — read once, when the peer is
/// made — is synchronous. A throwing call is reported to the caller it concerns (a `send` that cannot be
/// recorded fails), never swallowed.
package protocol DeliveryStore: Sendable {
  /// Whether what is recorded survives the process.
  var isDurable: Bool { get }

  /// Records an outgoing request, after every write made before it; it stays until
  /// ``removeOutgoing(id:)``. Calls `recorded` once it is recorded (for a durable store, on
  /// disk), or failed — at once for a store in memory, else from the store's writer.
  func recordOutgoing(_ record: OutgoingRecord, then recorded: @escaping @Sendable (Result<Void, any Error>) -> Void)
  /// Records the reply to an outgoing request (``Answer/id``, from ``Answer/from``), until the
  /// caller has taken it (``removeOutgoing(id:)``): a crash in between reports it again after
  /// the restart, rather than losing it.
  ///
  /// Queued after the writes before it, not awaited: a crash before it is written means the
  /// request is sent again after the restart, and answered from the receiver's window.
  func recordAnswer(_ answer: Answer)
  /// Forgets an outgoing request: its reply taken by the caller, or past its time to live.
  /// Queued, not awaited: a crash first means the request is sent again after the restart.
  func removeOutgoing(id: String)
  /// Readdresses the outgoing requests recorded for `peer` to `name`.
  /// Queued, not awaited.
  func renamePeer(_ peer: String, to name: String)
  /// Every outgoing request still recorded, oldest first, with every write queued before.
  func unansweredOutgoing() throws -> [OutgoingRecord]

  /// What the window holds for request `id` from `sender`, if anything. Asynchronous, for a
  /// store across the network (the cluster's PostgreSQL); the embedded ones answer at once.
  func windowEntry(for id: String, from sender: String) async throws -> WindowEntry?
  /// Records the reply given to request `answer.id` from `sender`, at `date` (seconds since
  /// 1970). Returns once it is recorded: only then may the reply be sent.
  func recordReply(_ answer: Answer, from sender: String, at date: Double) async throws
  /// Records that request `id` from `sender` was accepted and its handler is about to run
  /// (at-most-once handling): until its reply replaces it, ``windowEntry(for:from:)`` returns
  /// ``WindowEntry/accepted``. Keeps a reply already recorded.
  /// Returns once it is recorded: only then may the handler run.
  func recordAcceptance(of id: String, from sender: String, at date: Double) async throws
  /// As ``recordAcceptance(of:from:at:)``, and says whether this call recorded it: `false`
  /// when the window held request `id` from `sender` already — another hub of a cluster took
  /// it first, between this peer's ``windowEntry(for:from:)`` and now; its entry is then the
  /// answer. Stores of one process (where one peer's own copies are never handled at once)
  /// record and return `true`.
  func claimAcceptance(of id: String, from sender: String, at date: Double) async throws -> Bool
  /// Forgets replies recorded before `date` (seconds since 1970), then the oldest beyond
  /// `bounds`: a sender over its share loses its own, and when the whole window is over, the
  /// sender holding the most loses its oldest.
  func pruneReplies(before date: Double, bounds: WindowBounds) async throws
  /// Replies forgotten to keep within the bounds (not by age) since the store was opened.
  var windowEvictions: Int { get }
  /// Queued writes (``recordAnswer(_:)``, ``removeOutgoing(id:)``, ``renamePeer(_:to:)``)
  /// that failed since the store was opened.
  var failedWrites: Int { get }
}

extension DeliveryStore {
  package func claimAcceptance(of id: String, from sender: String, at date: Double) async throws -> Bool {
    try await self.recordAcceptance(of: id, from: sender, at: date)
    return true
  }
}
