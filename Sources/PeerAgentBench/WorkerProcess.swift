internal import Foundation
internal import PeerAgentTestSupport
private import Synchronization

/// A `bench-worker` child process: commands in, events out.
final class WorkerProcess: Sendable {
  private final class Collected: Sendable {
    let events = Mutex<[BenchProtocol.Event]>([])
    let partial = Mutex<String>("")
  }

  let arguments: [String]
  private let process: Process
  private let input: Pipe
  private let collected = Collected()

  var pid: Int32 { self.process.processIdentifier }

  let launch: [String]

  /// Whether `stop()` asks the worker to end and waits for it (a profiler writes its output
  /// at exit) rather than killing it.
  let graceful: Bool

  /// Starts `launch + arguments`: `launch` is the program and its leading arguments (this
  /// binary and `bench-worker`, or a Python and its script, possibly under a profiler).
  init(launch: [String], arguments: [String], environment: [String: String] = [:], graceful: Bool = false) throws {
    self.launch = launch
    self.arguments = arguments
    self.graceful = graceful
    self.process = Process()
    self.process.executableURL = URL(fileURLWithPath: launch[0])
    self.process.arguments = Array(launch.dropFirst()) + arguments
    if !environment.isEmpty {
      self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    self.input = Pipe()
    let out = Pipe()
    self.process.standardInput = self.input
    self.process.standardOutput = out
    self.process.standardError = FileHandle.nullDevice
    let collected = self.collected
    LineReader.read(out.fileHandleForReading) { lines in
      let events = lines.compactMap { try? JSONDecoder().decode(BenchProtocol.Event.self, from: Data($0.utf8)) }
      collected.events.withLock { $0 += events }
    }
    try self.process.run()
  }

  /// Waits for the `index`-th event (0-based) named `name`.
  func wait(for name: String, index: Int = 0, timeout: Duration) async throws -> BenchProtocol.Event {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
      let matching = self.collected.events.withLock { $0.filter { $0.event == name } }
      if matching.count > index { return matching[index] }
      if !self.process.isRunning { break }
      try await Task.sleep(for: .milliseconds(10))
    }
    throw BenchFailure(message: "bench worker (\(self.arguments.prefix(6).joined(separator: " "))) gave no '\(name)' event")
  }

  /// Waits until events named `name` came from `count` distinct peers; returns the first of
  /// each, in order.
  func waitDistinct(for name: String, count: Int, timeout: Duration) async throws -> [BenchProtocol.Event] {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    var firsts: [BenchProtocol.Event] = []
    while ContinuousClock.now < deadline {
      var seen = Set<String>()
      firsts = self.collected.events.withLock { events in
        events.filter { $0.event == name && seen.insert($0.peer ?? "").inserted }
      }
      if firsts.count >= count { return firsts }
      if !self.process.isRunning { break }
      try await Task.sleep(for: .milliseconds(20))
    }
    throw BenchFailure(message: "only \(firsts.count) of \(count) peers gave a '\(name)' event in time")
  }

  func count(of name: String) -> Int {
    self.collected.events.withLock { $0.filter { $0.event == name }.count }
  }

  /// Sends a command and waits for its answer (`result` or `probed`).
  func run(_ command: BenchProtocol.Command, answer: String, timeout: Duration) async throws -> BenchProtocol.Event {
    let before = self.count(of: answer)
    let errors = self.count(of: "error")
    self.input.fileHandleForWriting.write(Data((BenchProtocol.encode(command) + "\n").utf8))
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
      if self.count(of: answer) > before { return try await self.wait(for: answer, index: before, timeout: .seconds(1)) }
      if self.count(of: "error") > errors {
        let error = try await self.wait(for: "error", index: errors, timeout: .seconds(1))
        throw BenchFailure(message: error.message ?? "bench worker failed")
      }
      if !self.process.isRunning { break }
      try await Task.sleep(for: .milliseconds(5))
    }
    throw BenchFailure(message: "bench worker did not answer '\(command.cmd)' in time")
  }

  var stats: ProcessStats? { ProcessStats.read(pid: self.pid) }

  /// Ends the worker. A cell's figures are taken by then, so there is nothing to drain: the
  /// bench does not wait for a graceful shutdown it does not measure — unless the worker runs
  /// under a profiler, which writes its output only when the process exits by itself.
  func stop() async {
    if self.graceful && self.process.isRunning {
      self.input.fileHandleForWriting.write(Data((BenchProtocol.encode(BenchProtocol.Command(cmd: "exit")) + "\n").utf8))
      try? self.input.fileHandleForWriting.close()
      let deadline = ContinuousClock.now.advanced(by: .seconds(300))
      while self.process.isRunning && ContinuousClock.now < deadline {
        try? await Task.sleep(for: .milliseconds(50))
      }
    }
    self.kill()
  }

  func kill() {
    if self.process.isRunning { Foundation.kill(self.process.processIdentifier, SIGKILL) }
    self.process.waitUntilExit()
  }
}
