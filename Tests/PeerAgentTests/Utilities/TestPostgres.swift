import PeerAgentTestSupport

/// The tests' PostgreSQL server: the bench's scratch server, and psql to look into it.
typealias TestPostgres = ScratchPostgres
