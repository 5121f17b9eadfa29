internal import Logging
internal import PeerAgent
internal import PostgresNIO

/// The writes of one transaction of ``PostgresDeliveryStore``, as a few statements over arrays
/// (`unnest`) — one per kind of write — rather than one round trip per write: under load a
/// batch of hundreds of acceptances and replies costs a handful of round trips.
///
/// The kinds go in this order: requests recorded, acceptances, replies, answers, removals,
/// renames. Within one batch the writes of different kinds never concern the same row in an
/// order that matters (a reply is recorded only after its acceptance committed; a request is
/// removed or answered only after it was recorded and sent), so the order of a batch is kept
/// where it counts.
struct PostgresWriteBatch {
  enum Operation: Sendable {
    case outgoing(OutgoingRecord)
    case answer(Answer)
    case remove(String)
    case rename(String, to: String)
    case acceptance(sender: String, id: String, date: Double)
    case reply(sender: String, answer: Answer, date: Double)

    /// The strings it writes as PostgreSQL `text`.
    var texts: [String] {
      switch self {
      case .outgoing(let record): [record.id, record.peer, record.text] + (record.answer.map(Self.texts(of:)) ?? [])
      case .answer(let answer): Self.texts(of: answer)
      case .remove(let id): [id]
      case .rename(let peer, let name): [peer, name]
      case .acceptance(let sender, let id, _): [sender, id]
      case .reply(let sender, let answer, _): [sender] + Self.texts(of: answer)
      }
    }

    private static func texts(of answer: Answer) -> [String] {
      [answer.id, answer.text, answer.error ?? "", answer.code ?? ""]
    }

    /// Whether PostgreSQL refuses it: its `text` cannot hold the character NUL.
    var isUnstorable: Bool { self.texts.contains { $0.utf8.contains(0) } }
  }

  /// A write PostgreSQL cannot store (a NUL in a text): failed alone, before the batch.
  struct Unstorable: Error, CustomStringConvertible {
    var description: String { "the cluster database cannot store a text holding the character NUL" }
  }

  let hub: String
  let run: String
  let writes: [Operation]

  /// Applies the writes; returns, for each, whether it took effect as asked (`false` only for
  /// an acceptance the window held already).
  func apply(on connection: PostgresConnection, logger: Logger) async throws -> [Bool] {
    var outgoing: [OutgoingRecord] = []
    var acceptances: [(sender: String, id: String, date: Double)] = []
    var replies: [String: (sender: String, answer: Answer, date: Double)] = [:]
    var answers: [String: Answer] = [:]
    var removals: [String] = []
    var renames: [(String, String)] = []
    for write in self.writes {
      switch write {
      case .outgoing(let record): outgoing.append(record)
      case .acceptance(let sender, let id, let date): acceptances.append((sender, id, date))
      case .reply(let sender, let answer, let date): replies["\(sender)\u{0}\(answer.id)"] = (sender, answer, date)
      case .answer(let answer): answers[answer.id] = answer
      case .remove(let id): removals.append(id)
      case .rename(let peer, let name): renames.append((peer, name))
      }
    }
    if !outgoing.isEmpty {
      try await connection.query(
        """
        INSERT INTO peer_agent_outbox (id, origin, peer, text, expires_at)
        SELECT DISTINCT ON (id) id, \(self.hub), peer, text, expires_at
        FROM unnest(\(outgoing.map(\.id))::text[], \(outgoing.map(\.peer))::text[], \(outgoing.map(\.text))::text[], \(outgoing.map(\.expiresAt))::float8[])
          AS t(id, peer, text, expires_at)
        ON CONFLICT (id) DO UPDATE SET peer = excluded.peer, text = excluded.text, expires_at = excluded.expires_at
        """,
        logger: logger
      )
      // Delivered at commit: wakes the hubs that hold the agents.
      try await connection.query(
        "SELECT pg_notify('peer_agent_outbox', peer) FROM (SELECT DISTINCT unnest(\(outgoing.map(\.peer))::text[]) AS peer) AS p",
        logger: logger
      )
    }
    var inserted: Set<String> = []
    if !acceptances.isEmpty {
      let rows = try await connection.query(
        """
        INSERT INTO peer_agent_window (sender, id, text, error, recorded_at, pending, accepted_by, accepted_run)
        SELECT sender, id, '', NULL, recorded_at, true, \(self.hub), \(self.run)
        FROM unnest(\(acceptances.map(\.sender))::text[], \(acceptances.map(\.id))::text[], \(acceptances.map(\.date))::float8[])
          AS t(sender, id, recorded_at)
        ON CONFLICT (sender, id) DO NOTHING
        RETURNING sender, id
        """,
        logger: logger
      )
      for try await (sender, id) in rows.decode((String, String).self) { inserted.insert("\(sender)\u{0}\(id)") }
    }
    if !replies.isEmpty {
      let list = Array(replies.values)
      try await connection.query(
        """
        INSERT INTO peer_agent_window (sender, id, text, error, recorded_at, pending)
        SELECT sender, id, text, CASE WHEN failed THEN error END, recorded_at, false
        FROM unnest(\(list.map(\.sender))::text[], \(list.map(\.answer.id))::text[], \(list.map(\.answer.text))::text[],
          \(list.map { $0.answer.error != nil })::bool[], \(list.map { $0.answer.error ?? "" })::text[], \(list.map(\.date))::float8[])
          AS t(sender, id, text, failed, error, recorded_at)
        ON CONFLICT (sender, id) DO UPDATE SET text = excluded.text, error = excluded.error,
          recorded_at = excluded.recorded_at, pending = false
        """,
        logger: logger
      )
    }
    if !answers.isEmpty {
      let list = Array(answers.values)
      // The origin, if it is another hub, is woken to take the reply.
      try await connection.query(
        """
        WITH answered AS (
          UPDATE peer_agent_outbox o SET answered_by = a.answered_by, answered_verified = a.verified, answer = a.text,
            answer_error = CASE WHEN a.failed THEN a.error END, answer_code = CASE WHEN a.coded THEN a.code END, answered_at_hub = \(self.hub)
          FROM unnest(\(list.map(\.id))::text[], \(list.map { $0.from?.name ?? "" })::text[], \(list.map { $0.from?.isVerified ?? false })::bool[],
            \(list.map(\.text))::text[], \(list.map { $0.error != nil })::bool[], \(list.map { $0.error ?? "" })::text[],
            \(list.map { $0.code != nil })::bool[], \(list.map { $0.code ?? "" })::text[])
            AS a(id, answered_by, verified, text, failed, error, coded, code)
          WHERE o.id = a.id RETURNING o.origin
        )
        SELECT pg_notify('peer_agent_answers', origin) FROM (SELECT DISTINCT origin FROM answered WHERE origin <> \(self.hub)) AS d
        """,
        logger: logger
      )
    }
    if !removals.isEmpty {
      try await connection.query("DELETE FROM peer_agent_outbox WHERE id = ANY(\(removals)::text[])", logger: logger)
    }
    for (peer, name) in renames {
      try await connection.query(
        "UPDATE peer_agent_outbox SET peer = \(name) WHERE peer = \(peer) AND origin = \(self.hub)",
        logger: logger
      )
    }
    return self.writes.map { write in
      if case .acceptance(let sender, let id, _) = write { return inserted.contains("\(sender)\u{0}\(id)") }
      return true
    }
  }
}
