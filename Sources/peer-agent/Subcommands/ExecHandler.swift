private import Foundation
internal import Logging
internal import PeerAgent
private import Synchronization

/// `peer-agent run --exec CMD`: each request is answered by a program.
///
/// CMD runs under `/bin/sh -c` once per request, in a process group of its own, with the
/// request's text on its standard input and `PEER_AGENT_FROM` (the sender's name),
/// `PEER_AGENT_ID` (the request id), `PEER_AGENT_VERIFIED` (`true` when the name comes from a
/// verified certificate) and `PEER_AGENT_LINK` in its environment. Its standard output, trimmed
/// of surrounding white space, is the reply.
///
/// The reply goes when the program exits, whether or not something it started in the
/// background still holds its output open. At the timeout every process of the run — the
/// program, and what it left running, even outside its group — is killed, and the slot is free
/// again: no run holds a slot longer than the timeout.
///
/// A non-zero exit, a kill, output over the message limit, or a run longer than the timeout is
/// an error reply with a code and a short reason; the command line and what the program said on
/// standard error go to this peer's log only.
struct ExecHandler: Sendable {
  /// Why a run gave no reply: ``description`` is what the remote reads (no command line, no
  /// output); ``detail`` is for this peer's log.
  struct Failure: Error, CustomStringConvertible {
    let description: String
    let detail: String
  }

  let command: String
  let timeout: Duration
  let maximumOutputBytes: Int
  let logger: Logger
  private let slots: ExecSlots
  private let leftovers = ExecLeftovers()

  init(command: String, timeout: Duration, concurrency: Int, maximumOutputBytes: Int, logger: Logger) {
    self.command = command
    self.timeout = timeout
    self.maximumOutputBytes = maximumOutputBytes
    self.logger = logger
    self.slots = ExecSlots(concurrency)
  }

  /// Kills what runs left running in the background and are not yet past their timeout: the
  /// peer is stopping.
  func killLeftovers() {
    self.leftovers.killAll()
  }

  /// The reply to `request`: what CMD printed.
  func reply(to request: IncomingRequest) async throws -> String {
    try await self.slots.acquire()
    defer { self.slots.release() }
    do {
      return try await self.run(request)
    } catch let failure as Failure {
      self.logger.warning(
        "--exec failed",
        metadata: ["id": "\(request.id)", "from": "\(request.from.name.logSafe)", "reason": "\(failure.detail)"]
      )
      throw failure
    }
  }

  private func run(_ request: IncomingRequest) async throws -> String {
    var environment = ProcessInfo.processInfo.environment
    environment["PEER_AGENT_FROM"] = request.from.name
    environment["PEER_AGENT_ID"] = request.id
    environment["PEER_AGENT_VERIFIED"] = request.from.isVerified ? "true" : "false"
    environment["PEER_AGENT_LINK"] = "\(request.link)"
    let run = ExecRun(
      command: self.command,
      environment: environment,
      input: Array(request.text.utf8),
      timeout: self.timeout,
      outputLimit: self.maximumOutputBytes,
      leftovers: self.leftovers
    )
    let result = try await run.outcome()
    let quoted = "--exec '\(self.command)'"
    switch result.end {
    case .notStarted(let error):
      throw Failure(description: "the program answering requests could not be started", detail: "cannot run \(quoted): \(error)")
    case .timedOut:
      throw Failure(
        description: "the program answering requests did not finish within \(self.timeout) and was killed",
        detail: "\(quoted) did not finish within \(self.timeout): killed with everything it started" + result.said
      )
    case .exited(let status) where status != 0:
      throw Failure(
        description: "the program answering requests exited with status \(status)",
        detail: "\(quoted) exited with status \(status)" + result.said
      )
    case .signalled(let signal):
      throw Failure(
        description: "the program answering requests was killed by signal \(signal)",
        detail: "\(quoted) was killed by signal \(signal)" + result.said
      )
    case .exited:
      break
    }
    if result.outputTooLarge {
      throw Failure(
        description: "the program answering requests printed more than \(self.maximumOutputBytes) bytes",
        detail: "\(quoted) printed more than \(self.maximumOutputBytes) bytes"
      )
    }
    return String(decoding: result.output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

/// At most `count` programs at once; the others wait, first come first served.
final class ExecSlots: Sendable {
  private struct State {
    var free: Int
    var waiters: [CheckedContinuation<Void, Never>] = []
  }

  private let state: Mutex<State>

  init(_ count: Int) {
    self.state = Mutex(State(free: max(1, count)))
  }

  /// Takes a slot; throws `CancellationError` (holding none) if the request was cancelled by
  /// the time one was free.
  func acquire() async throws {
    await withCheckedContinuation { continuation in
      let now = self.state.withLock { state -> Bool in
        if state.free > 0 {
          state.free -= 1
          return true
        }
        state.waiters.append(continuation)
        return false
      }
      if now { continuation.resume() }
    }
    if Task.isCancelled {
      self.release()
      throw CancellationError()
    }
  }

  func release() {
    let next = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
      if state.waiters.isEmpty {
        state.free += 1
        return nil
      }
      return state.waiters.removeFirst()  // the slot passes straight to it
    }
    next?.resume()
  }
}
