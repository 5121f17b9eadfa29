import Foundation

@testable import peer_agent

/// The tests' PostgreSQL server: the bench's scratch server, and psql to look into it.
typealias TestPostgres = ScratchPostgres

extension ScratchPostgres {
  /// Runs SQL with psql; returns what it printed (unaligned, tuples only).
  func psql(_ sql: String) throws -> String {
    let result = try Tool.run("\(self.bin)/psql", ["-h", "127.0.0.1", "-p", "\(self.port)", "-U", "postgres", "-d", "postgres", "-At", "-c", sql])
    guard result.status == 0 else { throw Failure(message: "psql: \(result.output)") }
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
  }
}
