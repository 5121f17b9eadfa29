private import Foundation
internal import Logging
internal import PeerAgent
private import Synchronization

#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

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

/// One run of the program, in a process group of its own, driven by one blocking loop on a
/// thread of the global queue (poll on its pipes, waitpid without blocking): it ends when the
/// program exits, at the timeout, or when the request is cancelled — never later.
private final class ExecRun: Sendable {
  enum End: Sendable {
    case exited(Int32)
    case signalled(Int32)
    case timedOut
    case notStarted(String)
  }

  struct Result: Sendable {
    var output: [UInt8] = []
    var errors: [UInt8] = []
    var outputTooLarge = false
    var end = End.exited(0)

    /// The end of what the program said on standard error, for the log.
    var said: String {
      let text = String(decoding: self.errors.suffix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      return text.isEmpty ? "" : ": \(text)"
    }
  }

  /// The environment variable every process of one run inherits: at the timeout, the processes
  /// that carry it are killed, wherever they went (another group, another session).
  static let markerVariable = "PEER_AGENT_EXEC_RUN"

  private let command: String
  private let environment: [String: String]
  private let input: [UInt8]
  private let timeout: Duration
  private let outputLimit: Int
  private let marker = UUID().uuidString
  private let cancelled = Atomic<Bool>(false)
  private let leftovers: ExecLeftovers

  init(
    command: String,
    environment: [String: String],
    input: [UInt8],
    timeout: Duration,
    outputLimit: Int,
    leftovers: ExecLeftovers
  ) {
    self.leftovers = leftovers
    self.command = command
    var environment = environment
    environment[Self.markerVariable] = self.marker
    self.environment = environment
    self.input = input
    self.timeout = timeout
    self.outputLimit = outputLimit
  }

  /// Runs the program and returns how it ended; cancelling the caller kills the run.
  func outcome() async throws -> Result {
    let result = await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Result, Never>) in
        DispatchQueue.global().async { continuation.resume(returning: self.drive()) }
      }
    } onCancel: {
      self.cancelled.store(true, ordering: .relaxed)
    }
    if self.cancelled.load(ordering: .relaxed) { throw CancellationError() }
    return result
  }

  /// The loop: spawns, feeds standard input, collects the output, reaps, kills at the deadline.
  private func drive() -> Result {
    var result = Result()
    let started = ContinuousClock.now
    let deadline = started.advanced(by: self.timeout)
    let child: SpawnedChild
    do {
      child = try SpawnedChild(command: self.command, environment: self.environment)
    } catch {
      result.end = .notStarted("\(error)")
      return result
    }
    var stdin: Int32? = child.stdin
    var stdout: Int32? = child.stdout
    var stderr: Int32? = child.stderr
    var written = 0
    if self.input.isEmpty, let fd = stdin {
      close(fd)
      stdin = nil
    }
    var exit: End?
    var drainPasses = 0
    defer {
      for fd in [stdin, stdout, stderr].compactMap({ $0 }) { close(fd) }
    }
    /// The reply goes now; whatever the program left running dies at the timeout.
    func finish(_ end: End) -> Result {
      result.end = end
      if child.groupHasMembers {
        self.leftovers.kill(self.marker, after: deadline - ContinuousClock.now)
      }
      return result
    }
    while true {
      if exit == nil, let status = child.reap() { exit = status }
      if let exit {
        // Exited: what is in the pipes now is the output. A child left running in the
        // background may hold them open, or keep writing: a few passes at most.
        drainPasses += 1
        if (stdout == nil && stderr == nil) || drainPasses > 8 { return finish(exit) }
      } else if ContinuousClock.now >= deadline || self.cancelled.load(ordering: .relaxed) {
        child.killGroup()
        SpawnedChild.killMarked(self.marker)
        _ = child.reap(blocking: true)
        result.end = .timedOut
        return result
      }
      var fds: [pollfd] = []
      if let fd = stdout { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
      if let fd = stderr { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
      if let fd = stdin, exit == nil { fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)) }
      if fds.isEmpty {
        // Nothing to read or write: wait for the exit (or the deadline).
        usleep(10_000)
        continue
      }
      let wait = exit != nil ? 0 : Int32(min(50, max(1, (deadline - ContinuousClock.now).milliseconds)))
      let ready = poll(&fds, nfds_t(fds.count), wait)
      if ready <= 0 {
        // Exited, and nothing more waits in the pipes.
        if let exit { return finish(exit) }
        continue
      }
      for entry in fds where entry.revents != 0 {
        if entry.fd == stdin {
          var failed = false
          if entry.revents & Int16(POLLOUT) != 0 {
            let count = self.input.withUnsafeBytes { bytes in
              write(entry.fd, bytes.baseAddress! + written, min(65_536, bytes.count - written))
            }
            if count > 0 { written += count } else if errno != EAGAIN && errno != EINTR { failed = true }
          }
          // Written, or the program closed its input (EPIPE, POLLERR): its choice.
          if written >= self.input.count || failed || entry.revents & Int16(POLLERR | POLLHUP) != 0 {
            close(entry.fd)
            stdin = nil
          }
          continue
        }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = read(entry.fd, &buffer, buffer.count)
        if count <= 0 {
          if count == 0 || (errno != EAGAIN && errno != EINTR) {
            close(entry.fd)
            if entry.fd == stdout { stdout = nil } else { stderr = nil }
          }
          continue
        }
        if entry.fd == stdout {
          if result.output.count + count > self.outputLimit {
            result.outputTooLarge = true
          } else {
            result.output += buffer[0 ..< count]
          }
        } else {
          result.errors += buffer[0 ..< count]
          if result.errors.count > 64 * 1024 { result.errors.removeFirst(result.errors.count - 64 * 1024) }
        }
      }
    }
  }
}

/// The runs that exited but left processes behind, until their timeout (or the peer's stop)
/// kills them.
private final class ExecLeftovers: Sendable {
  private let markers = Mutex<Set<String>>([])

  /// Kills the processes of the run `marker` after `delay`.
  func kill(_ marker: String, after delay: Duration) {
    self.markers.withLock { _ = $0.insert(marker) }
    DispatchQueue.global().asyncAfter(deadline: .now() + max(0, delay.seconds)) {
      guard self.markers.withLock({ $0.remove(marker) }) != nil else { return }
      SpawnedChild.killMarked(marker)
    }
  }

  /// Kills the processes of every run not yet killed.
  func killAll() {
    let all = self.markers.withLock { markers in
      defer { markers.removeAll() }
      return markers
    }
    for marker in all { SpawnedChild.killMarked(marker) }
  }
}

/// `/bin/sh -c CMD` started with posix_spawn in a process group of its own (its id is the
/// child's pid), default signal dispositions and an empty signal mask, and non-blocking pipes
/// for its three standard streams.
private struct SpawnedChild {
  struct SpawnFailure: Error, CustomStringConvertible {
    var description: String
  }

  let pid: pid_t
  let stdin: Int32
  let stdout: Int32
  let stderr: Int32

  init(command: String, environment: [String: String]) throws {
    var pipes: [(read: Int32, write: Int32)] = []
    defer {
      // The child's ends, and on failure ours too.
      for (index, pair) in pipes.enumerated() { close(index == 0 ? pair.read : pair.write) }
    }
    for _ in 0 ..< 3 {
      var fds: [Int32] = [-1, -1]
      guard pipe(&fds) == 0 else {
        let error = SpawnFailure(description: "pipe: \(String(cString: strerror(errno)))")
        for (index, pair) in pipes.enumerated() { close(index == 0 ? pair.write : pair.read) }
        throw error
      }
      for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
      pipes.append((fds[0], fds[1]))
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipes[0].read, 0)
    posix_spawn_file_actions_adddup2(&actions, pipes[1].write, 1)
    posix_spawn_file_actions_adddup2(&actions, pipes[2].write, 2)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var all = sigset_t()
    sigfillset(&all)
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    let arguments = ["/bin/sh", "-c", command].map { $0.withCString { strdup($0) } }
    let variables = environment.map { "\($0.key)=\($0.value)".withCString { strdup($0) } }
    defer {
      for pointer in arguments + variables { free(pointer) }
    }
    var pid: pid_t = 0
    let status = posix_spawn(&pid, "/bin/sh", &actions, &attributes, arguments + [nil], variables + [nil])
    guard status == 0 else {
      for (index, pair) in pipes.enumerated() { close(index == 0 ? pair.write : pair.read) }
      throw SpawnFailure(description: String(cString: strerror(status)))
    }
    self.pid = pid
    self.stdin = pipes[0].write
    self.stdout = pipes[1].read
    self.stderr = pipes[2].read
    for fd in [self.stdin, self.stdout, self.stderr] {
      _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }
  }

  /// How the program ended, once it has (reaped); `nil` while it runs.
  func reap(blocking: Bool = false) -> ExecRun.End? {
    var status: Int32 = 0
    while true {
      let reaped = waitpid(self.pid, &status, blocking ? 0 : WNOHANG)
      if reaped == -1 && errno == EINTR { continue }
      // Reaped by someone else (never, in peer-agent): its status is lost.
      if reaped == -1 && errno == ECHILD { return .exited(-1) }
      guard reaped == self.pid else { return nil }
      break
    }
    // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
    let signal = status & 0x7f
    return signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
  }

  /// Whether any process of the program's group still runs (after the program was reaped: what
  /// it left running in the background).
  var groupHasMembers: Bool { kill(-self.pid, 0) == 0 }

  /// Kills the program's process group: the program and what it started there. Called only
  /// before the program is reaped, while the group's id is surely still the run's.
  func killGroup() {
    kill(-self.pid, SIGKILL)
  }

  /// Kills every process whose environment carries `marker`: what a run left behind, even in
  /// another group or session. Processes of other users are not readable and not ours.
  static func killMarked(_ marker: String) {
    let needle = Array("\(ExecRun.markerVariable)=\(marker)\0".utf8)
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
    for entry in entries {
      guard let pid = Int32(entry), pid != getpid(),
        let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ")
      else { continue }
      if [UInt8](environment).firstRange(of: needle) != nil {
        kill(pid, SIGKILL)
      }
    }
  }
}

extension Duration {
  fileprivate var milliseconds: Int64 {
    let (seconds, attoseconds) = self.components
    return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
  }

  fileprivate var seconds: Double {
    let (seconds, attoseconds) = self.components
    return Double(seconds) + Double(attoseconds) / 1e18
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
