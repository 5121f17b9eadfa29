private import Foundation
private import Synchronization

#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// `/bin/sh -c CMD` started with posix_spawn in a process group of its own (its id is the
/// child's pid), default signal dispositions and an empty signal mask, and non-blocking pipes
/// for its three standard streams.
struct SpawnedChild {
  struct SpawnFailure: Error, CustomStringConvertible {
    var description: String
  }

  let pid: Int32
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
