/// Where a peer keeps what it must not lose: the requests it sent that are not answered yet
/// (its outbox), and the replies it gave recently (its de-duplication window).
///
/// The seam between the delivery machinery and storage: the embedded SQLite store
/// (``SQLiteDeliveryStore``) and the in-memory one (``InMemoryDeliveryStore``) are used by the
/// same code path, and a peer can be given any other implementation
/// (``Peer/init(config:store:logger:handler:)``), such as a database shared by several hubs.
///
/// Calls are synchronous and short (one statement each); they are made outside the peer's
/// locks. A throwing call is reported to the caller it concerns (a `send` that cannot be
/// recorded fails), never swallowed.
package protocol DeliveryStore: Sendable {
  /// Whether what is recorded survives the process.
  var isDurable: Bool { get }

  /// Records an outgoing request; it stays until ``removeOutgoing(id:)``.
  func recordOutgoing(_ record: OutgoingRecord) throws
  /// Records the reply to an outgoing request (``Answer/id``, from ``Answer/from``), until the
  /// caller has taken it (``removeOutgoing(id:)``): a crash in between reports it again after
  /// the restart, rather than losing it.
  func recordAnswer(_ answer: Answer) throws
  /// Forgets an outgoing request: its reply taken by the caller, or past its time to live.
  func removeOutgoing(id: String) throws
  /// Readdresses the outgoing requests recorded for `peer` to `name`.
  func renamePeer(_ peer: String, to name: String) throws
  /// Every outgoing request still recorded, oldest first.
  func unansweredOutgoing() throws -> [OutgoingRecord]

  /// What the window holds for request `id` from `sender`, if anything.
  func windowEntry(for id: String, from sender: String) throws -> WindowEntry?
  /// Records the reply given to request `answer.id` from `sender`, at `date` (seconds since
  /// 1970).
  func recordReply(_ answer: Answer, from sender: String, at date: Double) throws
  /// Records that request `id` from `sender` was accepted and its handler is about to run
  /// (at-most-once handling): until its reply replaces it, ``windowEntry(for:from:)`` returns
  /// ``WindowEntry/accepted``. Keeps a reply already recorded.
  func recordAcceptance(of id: String, from sender: String, at date: Double) throws
  /// Forgets replies recorded before `date` (seconds since 1970), then the oldest beyond
  /// `bounds`: a sender over its share loses its own, and when the whole window is over, the
  /// sender holding the most loses its oldest.
  func pruneReplies(before date: Double, bounds: WindowBounds) throws
  /// Replies forgotten to keep within the bounds (not by age) since the store was opened.
  var windowEvictions: Int { get }
}
