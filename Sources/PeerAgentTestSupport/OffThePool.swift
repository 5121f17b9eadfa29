private import Foundation

/// Runs blocking work — a child process waited for (`initdb`, `pg_ctl`, `psql`, `peer-agent
/// certs`), a synchronous read — on a thread of its own, and returns its result to the
/// awaiting task. Swift's cooperative pool has one thread per core (two here): a test that
/// blocks one for seconds starves every other suite running beside it, whose timers
/// (heartbeats, stall detection) then fire late or not at all.
package func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    let thread = Thread { continuation.resume(with: Result { try body() }) }
    thread.name = "peer-agent tests: blocking work"
    thread.start()
  }
}
