private import Foundation
internal import PeerAgent
private import Synchronization

#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// `peer-agent run --exec CMD`: each request is answered by a program.
///
/// CMD runs under `/bin/sh -c` once per request, with the request's text on its standard input
/// and `PEER_AGENT_FROM` (the sender's name), `PEER_AGENT_ID` (the request id),
/// `PEER_AGENT_VERIFIED` (`true` when the name comes from a verified certificate) and
/// `PEER_AGENT_LINK` in its environment. Its standard output, trimmed of surrounding white
/// space, is the reply. A non-zero exit, a kill, output over the message limit, or a run longer
/// than the timeout is an error reply (the sender's `send` fails with the reason). At most
/// `concurrency` run at once; the others wait their turn.
struct ExecHandler: Sendable {
  struct Failure: Error, CustomStringConvertible {
    let description: String
  }

  let command: String
  let timeout: Duration
  let maximumOutputBytes: Int
  private let slots: ExecSlots

  init(command: String, timeout: Duration, concurrency: Int, maximumOutputBytes: Int) {
    self.command = command
    self.timeout = timeout
    self.maximumOutputBytes = maximumOutputBytes
    self.slots = ExecSlots(concurrency)
  }

  /// The reply to `request`: what CMD printed.
  func reply(to request: IncomingRequest) async throws -> String {
    try await self.slots.acquire()
    defer { self.slots.release() }
    return try await self.run(request)
  }

  private func run(_ request: IncomingRequest) async throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", self.command]
    var environment = ProcessInfo.processInfo.environment
    environment["PEER_AGENT_FROM"] = request.from.name
    environment["PEER_AGENT_ID"] = request.id
    environment["PEER_AGENT_VERIFIED"] = request.from.isVerified ? "true" : "false"
    environment["PEER_AGENT_LINK"] = "\(request.link)"
    process.environment = environment
    let input = Pipe()
    let output = Pipe()
    let errors = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = errors

    let run = ExecRun(outputLimit: self.maximumOutputBytes)
    run.collect(output.fileHandleForReading, into: .output)
    run.collect(errors.fileHandleForReading, into: .errors)
    process.terminationHandler = { process in
      run.exited(status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal)
    }
    do {
      try process.run()
    } catch {
      throw Failure(description: "cannot run --exec '\(self.command)': \(error.localizedDescription)")
    }
    // The request's text, from a thread of its own: a program that does not read its input
    // must not hold anything else up (a failed write, EPIPE, is the program's choice).
    let writer = input.fileHandleForWriting
    let text = Array(request.text.utf8)
    DispatchQueue.global().async {
      writeAll(writer.fileDescriptor, text)
      try? writer.close()
    }

    let pid = process.processIdentifier
    let timeout = self.timeout
    let finished = try await withThrowingTaskGroup(of: ExecRun.Result?.self) { group in
      group.addTask { await run.result() }
      group.addTask {
        try await Task.sleep(for: timeout)
        killTree(pid)
        return nil
      }
      defer { group.cancelAll() }
      return try await withTaskCancellationHandler {
        try await group.next() ?? nil
      } onCancel: {
        killTree(pid)
      }
    }
    guard let result = finished else {
      throw Failure(description: "--exec '\(self.command)' did not finish within \(timeout) and was killed")
    }
    if result.outputTooLarge {
      throw Failure(description: "--exec '\(self.command)' printed more than \(self.maximumOutputBytes) bytes")
    }
    guard result.status == 0, !result.signalled else {
      let how = result.signalled ? "was killed by signal \(result.status)" : "exited with status \(result.status)"
      let said = result.errors.trimmingCharacters(in: .whitespacesAndNewlines)
      throw Failure(description: "--exec '\(self.command)' \(how)" + (said.isEmpty ? "" : ": \(said.suffix(500))"))
    }
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

/// One run of the program: its output as it comes, and its end.
private final class ExecRun: Sendable {
  struct Result: Sendable {
    var output = ""
    var errors = ""
    var status: Int32 = 0
    var signalled = false
    var outputTooLarge = false
  }

  private struct State {
    var output = Data()
    var errors = Data()
    var openStreams = 2
    var exit: (status: Int32, signalled: Bool)?
    var waiter: CheckedContinuation<Result, Never>?
    var outputTooLarge = false
  }

  private let state = Mutex(State())
  private let outputLimit: Int

  init(outputLimit: Int) {
    self.outputLimit = outputLimit
  }

  enum Stream: Sendable {
    case output
    case errors
  }

  func collect(_ handle: FileHandle, into stream: Stream) {
    let limit = self.outputLimit
    handle.readabilityHandler = { handle in
      let data = handle.availableData
      let done: CheckedContinuation<Result, Never>?? = self.state.withLock { state in
        if data.isEmpty {
          handle.readabilityHandler = nil
          state.openStreams -= 1
          return .some(self.takeWaiterIfDone(&state))
        }
        switch stream {
        case .output:
          if state.output.count + data.count > limit {
            state.outputTooLarge = true
          } else {
            state.output.append(data)
          }
        case .errors:
          // Only the end of what it said is reported.
          state.errors.append(data)
          if state.errors.count > 64 * 1024 { state.errors.removeFirst(state.errors.count - 64 * 1024) }
        }
        return .none
      }
      if case .some(let waiter?) = done { waiter.resume(returning: self.snapshot()) }
    }
  }

  func exited(status: Int32, signalled: Bool) {
    let (waiter, streamsOpen) = self.state.withLock { state in
      state.exit = (status, signalled)
      return (self.takeWaiterIfDone(&state), state.openStreams > 0)
    }
    waiter?.resume(returning: self.snapshot())
    if streamsOpen {
      // A child of CMD may keep its output open after CMD itself ended: wait a second for the
      // rest of the output, then answer with what came.
      DispatchQueue.global().asyncAfter(deadline: .now() + 1) { self.giveUpOnStreams() }
    }
  }

  private func giveUpOnStreams() {
    let waiter = self.state.withLock { state in
      state.openStreams = 0
      return self.takeWaiterIfDone(&state)
    }
    waiter?.resume(returning: self.snapshot())
  }

  func result() async -> Result {
    await withCheckedContinuation { continuation in
      let ready = self.state.withLock { state -> Bool in
        if state.exit != nil && state.openStreams == 0 { return true }
        state.waiter = continuation
        return false
      }
      if ready { continuation.resume(returning: self.snapshot()) }
    }
  }

  private func takeWaiterIfDone(_ state: inout State) -> CheckedContinuation<Result, Never>? {
    guard state.exit != nil, state.openStreams == 0 else { return nil }
    defer { state.waiter = nil }
    return state.waiter
  }

  private func snapshot() -> Result {
    self.state.withLock { state in
      Result(
        output: String(decoding: state.output, as: UTF8.self),
        errors: String(decoding: state.errors, as: UTF8.self),
        status: state.exit?.status ?? -1,
        signalled: state.exit?.signalled ?? false,
        outputTooLarge: state.outputTooLarge
      )
    }
  }
}

/// At most `count` programs at once; the others wait, first come first served.
private final class ExecSlots: Sendable {
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

/// Kills `pid` and every process below it. A program's children keep its output open, and
/// Foundation notices the program's end only once they are gone too.
private func killTree(_ pid: Int32) {
  var parents: [Int32: [Int32]] = [:]
  if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
    for entry in entries {
      guard let child = Int32(entry),
        let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
      else { continue }
      // "pid (name) state ppid …": the name may hold spaces and parentheses.
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      if fields.count > 1, let parent = Int32(fields[1]) { parents[parent, default: []].append(child) }
    }
  }
  var doomed: [Int32] = []
  var queue = [pid]
  while let next = queue.popLast() {
    doomed.append(next)
    queue += parents[next] ?? []
  }
  for process in doomed { kill(process, SIGKILL) }
}
