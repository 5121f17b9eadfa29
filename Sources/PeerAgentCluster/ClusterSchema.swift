private import Foundation
internal import Logging
internal import PeerAgent
internal import PostgresNIO

/// The cluster's tables, created and migrated by PeerAgent itself: each version is applied once,
/// under an advisory lock, so hubs that start together do not race.
enum ClusterSchema {
  /// The migrations, in order; the database records how many it has.
  static let migrations: [String] = [
    """
    CREATE TABLE peer_agent_outbox (
      sequence bigserial NOT NULL,
      id text PRIMARY KEY,
      origin text NOT NULL,
      peer text NOT NULL,
      text text NOT NULL,
      expires_at double precision NOT NULL,
      claimed_by text,
      answered_by text,
      answered_verified boolean,
      answer text,
      answer_error text,
      answer_code text,
      answered_at_hub text
    );
    CREATE INDEX peer_agent_outbox_unanswered ON peer_agent_outbox (peer, sequence) WHERE answered_by IS NULL;
    CREATE INDEX peer_agent_outbox_origin ON peer_agent_outbox (origin, sequence);
    CREATE TABLE peer_agent_window (
      sender text NOT NULL,
      id text NOT NULL,
      text text NOT NULL,
      error text,
      recorded_at double precision NOT NULL,
      pending boolean NOT NULL DEFAULT false,
      accepted_by text,
      accepted_run text,
      PRIMARY KEY (sender, id)
    );
    CREATE INDEX peer_agent_window_age ON peer_agent_window (recorded_at);
    CREATE TABLE peer_agent_leases (
      agent text PRIMARY KEY,
      hub text NOT NULL,
      expires_at timestamptz NOT NULL
    );
    CREATE INDEX peer_agent_leases_hub ON peer_agent_leases (hub);
    CREATE TABLE peer_agent_hubs (
      hub text PRIMARY KEY,
      run text NOT NULL,
      expires_at timestamptz NOT NULL
    );
    """,
    // One name, one key across the cluster: the lease records the key that holds it.
    """
    ALTER TABLE peer_agent_leases ADD COLUMN key text
    """,
  ]

  static func migrate(_ client: PostgresClient, logger: Logger) async throws {
    try await client.withTransaction(logger: logger) { connection in
      // One hub at a time: the key is "peer-agent" in ASCII.
      try await connection.query("SELECT pg_advisory_xact_lock(7070065110116)", logger: logger)
      try await connection.query("CREATE TABLE IF NOT EXISTS peer_agent_schema (version integer NOT NULL)", logger: logger)
      var version = 0
      for try await value in try await connection.query("SELECT version FROM peer_agent_schema", logger: logger).decode(Int.self) {
        version = value
      }
      if version > migrations.count {
        throw PeerAgentError(
          code: .invalidConfiguration,
          message: "the cluster database has schema version \(version), newer than this peer-agent knows (\(migrations.count)): upgrade peer-agent"
        )
      }
      for migration in migrations[version...] {
        for statement in migration.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
          try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
      }
      if version == 0 {
        try await connection.query("INSERT INTO peer_agent_schema (version) VALUES (\(migrations.count))", logger: logger)
      } else if version < migrations.count {
        try await connection.query("UPDATE peer_agent_schema SET version = \(migrations.count)", logger: logger)
      }
    }
  }
}
