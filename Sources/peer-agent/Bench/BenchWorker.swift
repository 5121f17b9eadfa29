internal import ArgumentParser
internal import ContactProto
private import Foundation
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import Logging
internal import PeerAgent
private import Synchronization

/// One side of a `peer-agent bench` cell, in its own process. Not for direct use.
struct BenchWorker: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-worker",
    abstract: "One side of a `peer-agent bench` cell (started by `peer-agent bench`).",
    shouldDisplay: false
  )

  enum Role: String, ExpressibleByArgument, Sendable { case listener, dialer }
  enum Kind: String, ExpressibleByArgument, Sendable {
    case single, dual, raw
    case rawDefaults = "raw-defaults"
  }

  @Option(help: "listener or dialer.") var role: Role
  @Option(help: "single, dual, raw or raw-defaults.") var mode: Kind
  @Option(help: "This worker's peer name (with --peers, the prefix).") var name: String
  @Option(help: "Listen here.") var listen: String?
  @Option(help: "Dial here ([NAME@]HOST:PORT).") var connect: String?
  @Option(help: "Dialers in this process (fan-out), named NAME-0 … NAME-(N-1).") var peers: Int = 1
  @Option(help: "Certificates directory (ca.pem, NAME.pem, NAME-key.pem).") var certs: String?
  @Flag(help: "Plaintext.") var insecure = false
  @Flag(help: "raw only: grpc-swift-nio-transport's default settings instead of PeerAgent's.") var grpcDefaults = false
  @Option(help: "memory or sqlite (a fresh state folder per peer, removed at exit).") var storage: String = "memory"
  @Option(help: "Event loops of the peers (default: one per core).") var eventLoops: Int?
  @Option(help: "The listener's limit of connections from one address.") var connectionsPerAddress: Int?
  @Flag(help: "The library's reconnect backoff instead of the bench's short one.") var defaultBackoff = false

  func run() async throws {
    LoggingSystem.bootstrap { label in
      EscapingLogHandler.standardError(label: label, level: .error)
    }
    let output = WorkerOutput()
    let commands = StandardInputLines.make()
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
