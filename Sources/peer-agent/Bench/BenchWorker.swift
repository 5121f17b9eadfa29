internal import ArgumentParser
internal import Logging
internal import PeerAgentBench

/// One side of a `peer-agent bench` cell, in its own process. Not for direct use.
struct BenchWorker: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-worker",
    abstract: "One side of a `peer-agent bench` cell (started by `peer-agent bench`).",
    shouldDisplay: false
  )

  @Option(help: "listener or dialer.") var role: WorkerOptions.Role
  @Option(help: "single, dual, raw or raw-defaults.") var mode: WorkerOptions.Kind
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
    var options = WorkerOptions(role: self.role, mode: self.mode, name: self.name)
    options.listen = self.listen
    options.connect = self.connect
    options.peers = self.peers
    options.certs = self.certs
    options.insecure = self.insecure
    options.grpcDefaults = self.grpcDefaults
    options.storage = self.storage
    options.eventLoops = self.eventLoops
    options.connectionsPerAddress = self.connectionsPerAddress
    options.defaultBackoff = self.defaultBackoff
    try await options.run(commands: StandardInputLines.make())
  }
}

extension WorkerOptions.Role: ExpressibleByArgument {}
extension WorkerOptions.Kind: ExpressibleByArgument {}
