internal import ContactProto
internal import Foundation
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging
internal import PeerAgent
private import Synchronization

/// What one side of a bench cell is: the `bench-worker` command's options.
package struct WorkerOptions: Sendable {
  package enum Role: String, Sendable { case listener, dialer }
  package enum Kind: String, Sendable {
    case single, dual, raw
    case rawDefaults = "raw-defaults"
  }

  package var role: Role
  package var mode: Kind
  /// This worker's peer name (with `peers` > 1, the prefix).
  package var name: String
  package var listen: String?
  package var connect: String?
  /// Dialers in this process (fan-out), named NAME-0 … NAME-(N-1).
  package var peers = 1
  package var certs: String?
  package var insecure = false
  /// raw only: grpc-swift-nio-transport's default settings instead of PeerAgent's.
  package var grpcDefaults = false
  /// `memory` or `sqlite` (a fresh state folder per peer, removed at exit).
  package var storage = "memory"
  package var eventLoops: Int?
  package var connectionsPerAddress: Int?
  /// The library's reconnect backoff instead of the bench's short one.
  package var defaultBackoff = false

  package init(role: Role, mode: Kind, name: String) {
    self.role = role
    self.mode = mode
    self.name = name
  }

  /// Runs the worker: its peers (or the raw baseline) until `commands` says `exit` or ends,
  /// writing its events on standard output.
  package func run(commands: AsyncStream<String>) async throws {
    let output = WorkerOutput()
    switch self.mode {
    case .single, .dual:
      try await self.runPeers(commands: commands, output: output)
    case .raw, .rawDefaults:
      try await RawWorker(options: self).run(commands: commands, output: output)
    }
  }

  /// raw-defaults, or raw with --grpc-defaults: nio-transport's own settings.
  var usesGRPCDefaults: Bool { self.grpcDefaults || self.mode == .rawDefaults }

  func security(for name: String) -> Peer.Config.Security {
    guard let certs = self.certs, !self.insecure else { return .plaintext }
    return .mutualTLS(directory: certs, name: name)
  }

  private func runPeers(commands: AsyncStream<String>, output: WorkerOutput) async throws {
    let mode: Mode = self.mode == .dual ? .dual : .single
    let names = self.peers == 1 ? [self.name] : (0 ..< self.peers).map { "\(self.name)-\($0)" }
    let listen = try self.listen.map { try PeerAddress(parsing: $0) }
    let connect = try self.connect.map { try Peer.Target(parsing: $0) }
    let stateRoot = FileManager.default.temporaryDirectory
      .appendingPathComponent("peer-agent-bench-state-\(UInt32.random(in: .min ... .max))").path
    defer { try? FileManager.default.removeItem(atPath: stateRoot) }
    let peers = try names.map { name in
      try Peer(
        config: .defaults(mode: mode) { config in
          config.name = name
          config.listen = listen
          config.connect = connect.map { [$0] } ?? []
          config.security = self.security(for: name)
          if !self.defaultBackoff {
            config.reconnect.initialBackoff = .milliseconds(10)
            config.reconnect.maximumBackoff = .milliseconds(200)
          }
          config.requests.timeout = .seconds(60)
          if self.storage == "sqlite" {
            config.delivery.storage = .sqlite(directory: (stateRoot as NSString).appendingPathComponent(name))
          }
          if let loops = self.eventLoops { config.transport.eventLoops = loops }
          if let limit = self.connectionsPerAddress {
            config.limits.maximumConnectionsPerAddress = limit
            config.limits.maximumConnections = max(config.limits.maximumConnections, limit)
          }
        },
        logger: Logger(label: "bench.\(name)")
      ) { request in request.text }
    }
    try await withThrowingDiscardingTaskGroup { group in
      for peer in peers {
        group.addTask { try await peer.run() }
        group.addTask {
          for await event in peer.events {
            switch event {
            case .listening(let address):
              output.emit(.init(event: "listening", address: "\(address)", peer: peer.name))
            case .connected(let remote, _):
              output.emit(.init(event: "connected", peer: remote.name, at: Date().timeIntervalSince1970))
            default:
              break
            }
          }
        }
      }
      for await line in commands {
        guard let command = try? JSONDecoder().decode(BenchProtocol.Command.self, from: Data(line.utf8)) else {
          continue
        }
        switch command.cmd {
        case "load":
          // The callers run on the event loop of the link they send on, as a latency-minded
          // user's would (`Peer.taskExecutor(for:)`); the raw baseline's run on its loop.
          let result = await Self.load(command, through: peers[0])
          output.emit(.init(event: "result", result: result))
        case "probe":
          output.emit(await Self.probe(command, through: peers[0]))
        case "heap":
          output.emit(.init(event: "heap", heap: BenchProtocol.Heap.now(trimming: command.trim)))
        default:
          for peer in peers { peer.beginGracefulShutdown() }
          return
        }
      }
      for peer in peers { peer.beginGracefulShutdown() }
    }
  }

  static func load(_ command: BenchProtocol.Command, through peer: Peer) async -> BenchProtocol.LoadResult {
    let text = String(repeating: "x", count: command.payload)
    let targets: [String?] = command.to.isEmpty ? [nil] : command.to
    // Several remotes (fan-out): the callers of each remote run on its link's loop, as
    // `Peer.taskExecutor(for:)` lets a hub's caller do, the window and the count shared out.
    var shares: [(executor: (any TaskExecutor)?, targets: [String?])] = []
    for target in targets {
      let executor = target.map { peer.taskExecutor(for: $0) } ?? peer.taskExecutor
      if let index = shares.firstIndex(where: { $0.executor.map(ObjectIdentifier.init) == executor.map(ObjectIdentifier.init) }) {
        shares[index].targets.append(target)
      } else {
        shares.append((executor, [target]))
      }
    }
    let parts = await withTaskGroup(of: WindowedLoad.Outcome.self) { group in
      for share in shares {
        let weight = Double(share.targets.count) / Double(targets.count)
        let window = max(1, Int((Double(command.window) * weight).rounded()))
        let count = max(1, Int((Double(command.count) * weight).rounded()))
        let warmup = Int((Double(command.warmup) * weight).rounded())
        group.addTask {
          await withTaskExecutorPreference(share.executor) {
            if warmup > 0 {
              _ = await WindowedLoad.run(count: warmup, window: window) { index in
                _ = try await peer.send(text, to: share.targets[index % share.targets.count])
              }
            }
            return await WindowedLoad.run(count: count, window: window) { index in
              _ = try await peer.send(text, to: share.targets[index % share.targets.count])
            }
          }
        }
      }
      var parts: [WindowedLoad.Outcome] = []
      for await part in group { parts.append(part) }
      return parts
    }
    let latencies = parts.flatMap(\.latencies)
    return .init(
      requests: latencies.count,
      errors: parts.reduce(0) { $0 + $1.errors },
      seconds: parts.map(\.seconds).max() ?? 0,
      latency: LatencySummary(microseconds: latencies),
      firstError: parts.compactMap(\.firstError).first
    )
  }

  static func probe(_ command: BenchProtocol.Command, through peer: Peer) async -> BenchProtocol.Event {
    let deadline = ContinuousClock.now.advanced(by: .fromSeconds(command.timeout))
    while ContinuousClock.now < deadline {
      do {
        _ = try await peer.send("probe", to: command.to.first, timeout: .milliseconds(500))
        return .init(event: "probed", at: Date().timeIntervalSince1970)
      } catch {
        try? await Task.sleep(for: .milliseconds(5))
      }
    }
    return .init(event: "error", message: "no reply within \(command.timeout) s")
  }
}

/// Writes a worker's events to standard output, one JSON object a line.
final class WorkerOutput: Sendable {
  private let lock = Mutex(())

  func emit(_ event: BenchProtocol.Event) {
    let line = BenchProtocol.encode(event) + "\n"
    self.lock.withLock { _ in FileHandle.standardOutput.write(Data(line.utf8)) }
  }
}
