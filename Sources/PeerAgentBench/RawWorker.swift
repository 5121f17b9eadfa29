internal import ContactProto
private import Foundation
internal import GRPCCore
internal import GRPCNIOTransportHTTP2
internal import NIOPosix
internal import PeerAgent
private import Synchronization
internal import SwiftProtobuf

/// The baseline: the same `Contact` traffic with plain grpc-swift-2 calls on the generated
/// stubs, the same transport and TLS, and none of PeerAgent's logic (no ids, correlation,
/// registry or identity). Dialer → listener: a `sendStatus` stream per load, replies taken in
/// order. Listener → dialer: pushed down the dialer's `getTask`, answered on `tellResult`.
struct RawWorker {
  let options: WorkerOptions
  /// The same transport settings PeerAgent uses, so raw ÷ PeerAgent is PeerAgent's own cost.
  static let tuning = Peer.Config.Transport.defaults

  /// Where the streams run: on their connection's event loop, as PeerAgent's do (the same
  /// setting; one connection, so one loop); with grpc-swift's defaults, on the concurrency
  /// pool and NIO's shared event loops.
  var executor: EventLoopExecutor? { self.options.usesGRPCDefaults ? nil : EventLoops.shared(loops: 1).executors[0] }
  var group: MultiThreadedEventLoopGroup {
    self.options.usesGRPCDefaults ? .singletonMultiThreadedEventLoopGroup : EventLoops.shared(loops: 1).group
  }

  func run(commands: AsyncStream<String>, output: WorkerOutput) async throws {
    switch self.options.role {
    case .listener: try await self.runListener(commands: commands, output: output)
    case .dialer: try await self.runDialer(commands: commands, output: output)
    }
  }

  // MARK: - TLS, as plain nio-transport configures it

  private func pem(_ path: String) -> [UInt8] {
    Array((try? String(contentsOfFile: path, encoding: .utf8))?.utf8 ?? "".utf8)
  }

  private var folder: CertificateDirectory { CertificateDirectory(self.options.certs ?? ".") }

  private var serverSecurity: HTTP2ServerTransport.Posix.TransportSecurity {
    guard self.options.certs != nil, !self.options.insecure else { return .plaintext }
    return .mTLS(
      certificateChain: [.bytes(self.pem(self.folder.certificate(for: self.options.name)), format: .pem)],
      privateKey: .bytes(self.pem(self.folder.privateKey(for: self.options.name)), format: .pem)
    ) {
      $0.trustRoots = .certificates([.bytes(self.pem(self.folder.authorityCertificate), format: .pem)])
    }
  }

  private var clientSecurity: HTTP2ClientTransport.Posix.TransportSecurity {
    guard self.options.certs != nil, !self.options.insecure else { return .plaintext }
    return .mTLS(
      certificateChain: [.bytes(self.pem(self.folder.certificate(for: self.options.name)), format: .pem)],
      privateKey: .bytes(self.pem(self.folder.privateKey(for: self.options.name)), format: .pem)
    ) {
      $0.trustRoots = .certificates([.bytes(self.pem(self.folder.authorityCertificate), format: .pem)])
      $0.serverCertificateVerification = .noHostnameVerification
    }
  }

  // MARK: - Listener

  private func runListener(commands: AsyncStream<String>, output: WorkerOutput) async throws {
    let address = try PeerAddress(parsing: self.options.listen ?? "127.0.0.1:0")
    let service = RawService(output: output, executor: self.executor)
    let transport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: address.host, port: address.port),
      transportSecurity: self.serverSecurity,
      config: .defaults { config in
        if !self.options.usesGRPCDefaults {
          config.connection.flushCoalescing = Self.tuning.flushCoalescing.map { .init(maxFlushDelay: $0.maximumDelay, maxBytes: $0.maximumBytes) }
        }
      },
      eventLoopGroup: self.group
    )
    let server = GRPCServer(transport: transport, services: [service])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      if let bound = try await transport.listeningAddress.ipv4 {
        output.emit(.init(event: "listening", address: "\(bound.host):\(bound.port)", peer: self.options.name))
      }
      for await line in commands {
        guard let command = try? JSONDecoder().decode(BenchProtocol.Command.self, from: Data(line.utf8)) else {
          continue
        }
        guard command.cmd == "load" else { break }
        output.emit(.init(event: "result", result: await service.push(command)))
      }
      service.close()
      server.beginGracefulShutdown()
      group.cancelAll()
    }
  }

  // MARK: - Dialer

  private func runDialer(commands: AsyncStream<String>, output: WorkerOutput) async throws {
    let target = try Peer.Target(parsing: self.options.connect ?? "")
    let transport = try HTTP2ClientTransport.Posix(
      target: .ipv4(address: target.address.host, port: target.address.port),
      transportSecurity: self.clientSecurity,
      config: .defaults { config in
        if !self.options.usesGRPCDefaults {
          config.connection.flushCoalescing = Self.tuning.flushCoalescing.map { .init(maxFlushDelay: $0.maximumDelay, maxBytes: $0.maximumBytes) }
        }
      },
      eventLoopGroup: self.group
    )
    try await withTaskExecutorPreference(self.executor) {
      try await withGRPCClient(transport: transport) { client in
        let contact = Contact_Contact.Client(wrapping: client)
        try await withThrowingDiscardingTaskGroup { group in
          // The reverse direction: answer every pushed task on tellResult, in order.
          group.addTask {
            while !Task.isCancelled {
              let (results, continuation) = AsyncStream<Contact_Result>.makeStream()
              try? await withThrowingDiscardingTaskGroup { streams in
                streams.addTask {
                  try await contact.tellResult(requestProducer: { writer in
                    for await result in results { try await writer.write(result) }
                  }) { _ in }
                }
                streams.addTask {
                  defer { continuation.finish() }
                  try await contact.getTask(Contact_Empty()) { response in
                    output.emit(.init(event: "connected", peer: target.expectedIdentity ?? "listener"))
                    for try await task in response.messages {
                      var result = Contact_Result()
                      result.ret = task.task
                      continuation.yield(result)
                    }
                  }
                  throw CancellationError()
                }
              }
              try? await Task.sleep(for: .milliseconds(10))
            }
          }
          for await line in commands {
            guard let command = try? JSONDecoder().decode(BenchProtocol.Command.self, from: Data(line.utf8)) else {
              continue
            }
            switch command.cmd {
            case "load":
              output.emit(.init(event: "result", result: await Self.load(command, contact: contact)))
            case "probe":
              output.emit(await Self.probe(command, contact: contact))
            default:
              group.cancelAll()
              return
            }
          }
          group.cancelAll()
        }
      }
    }
  }

  static func load(_ command: BenchProtocol.Command, contact: Contact_Contact.Client<HTTP2ClientTransport.Posix>) async -> BenchProtocol.LoadResult {
    if command.warmup > 0 {
      _ = try? await Self.stream(count: command.warmup, command: command, contact: contact)
    }
    do {
      let (latencies, seconds) = try await Self.stream(count: command.count, command: command, contact: contact)
      return .init(requests: latencies.count, errors: command.count - latencies.count, seconds: seconds, latency: .init(microseconds: latencies))
    } catch {
      return .init(requests: 0, errors: command.count, seconds: 0, latency: .init(microseconds: []), firstError: "\(error)")
    }
  }

  private static func stream(count: Int, command: BenchProtocol.Command, contact: Contact_Contact.Client<HTTP2ClientTransport.Posix>) async throws -> ([Double], Double) {
    let timer = FIFOTimer()
    let message = Contact_ClientMsg.with { $0.msg = String(repeating: "x", count: command.payload) }
    let outcome = Mutex<([Double], Double)?>(nil)
    try await contact.sendStatus(requestProducer: { writer in
      let result = try await timer.run(count: count, window: command.window) { _ in
        try await writer.write(message)
      }
      outcome.withLock { $0 = result }
    }) { response in
      for try await _ in response.messages { timer.replied() }
    }
    timer.finish()
    return outcome.withLock { $0 } ?? ([], 0)
  }

  static func probe(_ command: BenchProtocol.Command, contact: Contact_Contact.Client<HTTP2ClientTransport.Posix>) async -> BenchProtocol.Event {
    let deadline = ContinuousClock.now.advanced(by: .fromSeconds(command.timeout))
    var options = CallOptions.defaults
    options.waitForReady = false
    options.timeout = .milliseconds(500)
    while ContinuousClock.now < deadline {
      do {
        let answered = try await contact.sendStatus(options: options, requestProducer: { writer in
          var message = Contact_ClientMsg()
          message.msg = "probe"
          try await writer.write(message)
        }) { response in
          for try await _ in response.messages { return true }
          return false
        }
        if answered { return .init(event: "probed", at: Date().timeIntervalSince1970) }
      } catch {}
      try? await Task.sleep(for: .milliseconds(5))
    }
    return .init(event: "error", message: "no reply within \(command.timeout) s")
  }
}
