private import Foundation
internal import PeerAgent
private import Synchronization

#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// One run of the program, in a process group of its own, driven by one blocking loop on a
/// thread of the global queue (poll on its pipes, waitpid without blocking): it ends when the
/// program exits, at the timeout, or when the request is cancelled — never later.
final class ExecRun: Sendable {
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
final class ExecLeftovers: Sendable {
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
