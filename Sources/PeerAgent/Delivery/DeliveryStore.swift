/// Where a peer keeps what it must not lose: the requests it sent that are not answered yet
/// (its outbox), and the replies it gave recently (its de-duplication window).
///
/// One small protocol, so that the embedded SQLite store (``SQLiteDeliveryStore``) and the
/// in-memory one (``InMemoryDeliveryStore``) are interchangeable, and a shared database can
/// take their place later.
///
/// Calls are synchronous and short (one statement each); they are made outside the peer's
/// locks. A throwing call is reported to the caller it concerns (a `send` that cannot be
/// recorded fails), never swallowed.
protocol DeliveryStore: Sendable {
  /// Whether what is recorded survives the process.
  var isDurable: Bool { get }

  /// Records an outgoing request; it stays until ``removeOutgoing(id:)``.
  func recordOutgoing(_ record: OutgoingRecord) throws
  /// Records the reply to an outgoing request, until the caller has taken it
  /// (``removeOutgoing(id:)``): a crash in between reports it again after the restart, rather
  /// than losing it.
  func recordAnswer(_ answer: StoredAnswer, to id: String) throws
  /// Forgets an outgoing request: its reply taken by the caller, or past its time to live.
  func removeOutgoing(id: String) throws
  /// Readdresses the outgoing requests recorded for `peer` to `name`.
  func renamePeer(_ peer: String, to name: String) throws
  /// Every outgoing request still recorded, oldest first.
  func unansweredOutgoing() throws -> [OutgoingRecord]

  /// The reply already given to request `id` from `sender`, if it is in the window.
  func reply(to id: String, from sender: String) throws -> StoredReply?
  /// Records the reply given to request `id` from `sender`.
  func recordReply(_ reply: StoredReply, to id: String, from sender: String) throws
  /// Records that request `id` from `sender` was accepted and its handler is about to run
  /// (at-most-once handling): until its reply replaces it, ``reply(to:from:)`` returns it as
  /// ``StoredReply/isPending``. Keeps a reply already recorded.
  func recordAcceptance(of id: String, from sender: String, at date: Double) throws
  /// Forgets replies recorded before `date` (seconds since 1970), keeping at most `keep`.
  func pruneReplies(before date: Double, keep: Int) throws
}

/// An outgoing request as the store keeps it.
struct OutgoingRecord: Sendable, Hashable {
  var id: String
  /// The remote peer's name.
  var peer: String
  var text: String
  /// When the request stops being worth delivering, in seconds since 1970 (wall clock, so that
  /// it means the same after a restart).
  var expiresAt: Double
  /// The reply, once it arrived (and until the caller took it).
  var answer: StoredAnswer? = nil
}

/// The reply to an outgoing request, kept until the caller took it.
struct StoredAnswer: Sendable, Hashable {
  /// Who answered (the remote's identity name).
  var from: String
  var verified: Bool
  var text: String
  var error: String?
  /// The kind of failure PeerAgent reported with `error`, if any (see ``ReplyBody/code``).
  var code: String? = nil
}

/// A reply as the receiver's de-duplication window keeps it.
struct StoredReply: Sendable, Hashable {
  var text: String
  var error: String?
  /// When the reply was recorded, in seconds since 1970.
  var recordedAt: Double
  /// Accepted and handed to the handler, but no reply recorded (at-most-once): after a crash,
  /// whether the handler finished is unknown.
  var isPending = false
}
