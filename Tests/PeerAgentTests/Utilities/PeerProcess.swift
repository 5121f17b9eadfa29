import Foundation
import Synchronization

/// A `peer-agent` process started by a test, with its standard input to write to and its JSON
/// events (standard output) and log (standard error) collected as they come.
final class PeerProcess: Sendable {
  /// The `peer-agent` binary built next to the test bundle.
  static var executable: URL {
    get throws {
      if let path = ProcessInfo.processInfo.environment["PEER_AGENT_BIN"] {
        return URL(fileURLWithPath: path)
      }
      let testBinary = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
      var directory = testBinary.deletingLastPathComponent()
      // The bundle may be a directory (.xctest/…) on some platforms.
      while directory.pathComponents.count > 1 {
        let candidate = directory.appendingPathComponent("peer-agent")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory.deleteLastPathComponent()
      }
      throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "peer-agent next to \(testBinary.path)"])
    }
  }

  /// Runs `peer-agent` with `arguments` to completion; returns its exit status and output.
  static func runToCompletion(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = try Self.executable
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Both pipes at once: a process that fills one while we wait on the other would block.
    let error = Mutex(Data())
    let errorDone = DispatchSemaphore(value: 0)
    Thread {
      let data = err.fileHandleForReading.readDataToEndOfFile()
      error.withLock { $0 = data }
      errorDone.signal()
    }.start()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    errorDone.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error.withLock { $0 }, as: UTF8.self))
  }

  /// The same, from a task: the waiting happens on a thread of its own, not on one of the
  /// two threads of Swift's cooperative pool that every other suite running meanwhile needs.
  static func runToCompletion(_ arguments: [String]) async throws -> (status: Int32, output: String, error: String) {
    try await withCheckedThrowingContinuation { continuation in
      Thread { continuation.resume(with: Result { try Self.runToCompletion(arguments) as (Int32, String, String) }) }.start()
    }
  }

  private let process: Process
  private let input: Pipe
  private final class Collected: Sendable {
    let lines = Mutex<[String]>([])
    /// The events parsed as they arrive (text and value fields only), for tests that count
    /// thousands of them.
    let parsed = Mutex<[[String: String]]>([])
    let partial = Mutex<String>("")
    let log = Mutex<String>("")
    /// Set when standard output reached its end: everything the process printed is in.
    let outputEnded = Atomic<Bool>(false)
  }

  private let collected = Collected()

  init(_ arguments: [String]) throws {
    self.process = Process()
    self.process.executableURL = try Self.executable
    self.process.arguments = arguments
    self.input = Pipe()
    let out = Pipe()
    let err = Pipe()
    self.process.standardInput = self.input
    self.process.standardOutput = out
    self.process.standardError = err
    let collected = self.collected
    out.fileHandleForReading.readabilityHandler = { handle in
      let data = handle.availableData
      if data.isEmpty {
        handle.readabilityHandler = nil
        collected.outputEnded.store(true, ordering: .sequentiallyConsistent)
        return
      }
      let complete: [String] = collected.partial.withLock { buffer in
        buffer += String(decoding: data, as: UTF8.self)
        var parts = buffer.components(separatedBy: "\n")
        buffer = parts.removeLast()
        return parts
      }
      collected.lines.withLock { $0 += complete }
      let events = complete.compactMap { line -> [String: String]? in
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        return object.mapValues { "\($0)" }
      }
      collected.parsed.withLock { $0 += events }
    }
    err.fileHandleForReading.readabilityHandler = { handle in
      let data = handle.availableData
      if data.isEmpty {
        handle.readabilityHandler = nil
        return
      }
      collected.log.withLock { $0 += String(decoding: data, as: UTF8.self) }
    }
    try self.process.run()
  }

  /// The JSON events printed so far.
  var events: [[String: any Sendable]] {
    self.collected.lines.withLock { $0 }.compactMap { line in
      (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: any Sendable]
    }
  }

  var log: String { self.collected.log.withLock { $0 } }

  /// Every line of standard output so far (text mode's lines for people).
  var lines: [String] { self.collected.lines.withLock { $0 } }

  /// The events so far, every field as a string.
  var parsedEvents: [[String: String]] { self.collected.parsed.withLock { $0 } }

  /// How many events so far match `predicate`, without copying them.
  func count(where predicate: ([String: String]) -> Bool) -> Int {
    self.collected.parsed.withLock { $0.lazy.filter(predicate).count }
  }

  /// Writes many lines at once.
  func send(lines: [String]) {
    self.input.fileHandleForWriting.write(Data(lines.map { $0 + "\n" }.joined().utf8))
  }

  /// Ends the process at once, as `kill -9` does, and waits for it — and for what it printed
  /// before it died, still in the pipe, to be read.
  /// Whether the process still runs.
  var isRunning: Bool { self.process.isRunning }

  func kill() {
    guard self.process.isRunning else { return }
    Glibc.kill(self.process.processIdentifier, SIGKILL)
    self.process.waitUntilExit()
    let deadline = ContinuousClock.now.advanced(by: .seconds(5))
    while !self.collected.outputEnded.load(ordering: .sequentiallyConsistent), ContinuousClock.now < deadline {
      usleep(5000)
    }
  }

  /// Sends SIGHUP: the peer re-reads its TLS files.
  func hangUp() {
    if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGHUP) }
  }

  /// Sends SIGINT, as Ctrl-C in a terminal does.
  func interrupt() {
    if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGINT) }
  }

  /// Asks the process to stop (SIGTERM: graceful shutdown).
  func stop() {
    if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGTERM) }
  }

  /// Waits up to `timeout` for an event matching `predicate`.
  func wait(
    timeout: Duration = .seconds(20),
    for predicate: ([String: any Sendable]) -> Bool
  ) async -> [String: any Sendable]? {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
      if let event = self.events.first(where: predicate) { return event }
      try? await Task.sleep(for: .milliseconds(25))
    }
    return nil
  }

  func event(_ name: String, timeout: Duration = .seconds(20), where test: @escaping ([String: any Sendable]) -> Bool = { _ in true }) async -> [String: any Sendable]? {
    await self.wait(timeout: timeout) { $0["event"] as? String == name && test($0) }
  }

  func send(_ line: String) {
    self.input.fileHandleForWriting.write(Data((line + "\n").utf8))
  }

  func closeInput() {
    try? self.input.fileHandleForWriting.close()
  }

  func terminate() {
    if self.process.isRunning { self.process.terminate() }
  }

  /// Waits up to `timeout` for the process to exit; returns its status, or `nil` (and kills it).
  func waitForExit(timeout: Duration = .seconds(20)) async -> Int32? {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while self.process.isRunning && ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(25))
    }
    if self.process.isRunning {
      Glibc.kill(self.process.processIdentifier, SIGKILL)
      return nil
    }
    return self.process.terminationStatus
  }

  deinit {
    if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGKILL) }
  }
}
