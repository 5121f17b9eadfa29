import ContactProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOPosix
import PeerAgent
import Synchronization
import SwiftProtobuf

/// The baseline: the same `Contact` traffic with plain grpc-swift-2 calls on the generated
/// stubs, the same transport and TLS, and none of PeerAgent's logic (no ids, correlation,
/// registry or identity). Dialer → listener: a `sendStatus` stream per load, replies taken in
/// order. Listener → dialer: pushed down the dialer's `getTask`, answered on `tellResult`.
struct RawWorker {
  let options: BenchWorker
  /// The same transport settings PeerAgent uses, so raw ÷ PeerAgent is PeerAgent's own cost.
  static let tuning = Peer.Config.Transport.defaults

  /// Where the streams run: on PeerAgent's event loop, as PeerAgent's do (the same setting);
  /// with grpc-swift's defaults, on the concurrency pool and NIO's shared event loops.
  var executor: EventLoopExecutor? { self.options.usesGRPCDefaults ? nil : .shared }
  var group: MultiThreadedEventLoopGroup { self.executor?.group ?? .singletonMultiThreadedEventLoopGroup }

  func run(commands: AsyncStream<String>, output: WorkerOutput) async throws {
    switch self.options.role {
    case .listener: try await self.runListener(commands: commands, output: output)
    case .dialer: try await self.runDialer(commands: commands, output: output)
    }
  }

  // MARK: - TLS, as plain nio-transport configures it

  private func pem(_ file: String) -> [UInt8] {
    let path = ((self.options.certs ?? ".") as NSString).appendingPathComponent(file)
    return Array((try? String(contentsOfFile: path, encoding: .utf8))?.utf8 ?? "".utf8)
  }

  private var serverSecurity: HTTP2ServerTransport.Posix.TransportSecurity {
    guard self.options.certs != nil, !self.options.insecure else { return .plaintext }
    return .mTLS(
      certificateChain: [.bytes(self.pem("\(self.options.name).pem"), format: .pem)],
      privateKey: .bytes(self.pem("\(self.options.name)-key.pem"), format: .pem)
    ) {
      $0.trustRoots = .certificates([.bytes(self.pem("ca.pem"), format: .pem)])
    }
  }

  private var clientSecurity: HTTP2ClientTransport.Posix.TransportSecurity {
    guard self.options.certs != nil, !self.options.insecure else { return .plaintext }
    return .mTLS(
      certificateChain: [.bytes(self.pem("\(self.options.name).pem"), format: .pem)],
      privateKey: .bytes(self.pem("\(self.options.name)-key.pem"), format: .pem)
    ) {
      $0.trustRoots = .certificates([.bytes(self.pem("ca.pem"), format: .pem)])
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
    let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(command.timeout * 1000)))
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

/// The raw listener's service: echoes `sendStatus`; pushes loads down the dialer's `getTask`
/// and takes the answers on `tellResult`, in order.
final class RawService: Contact_Contact.StreamingServiceProtocol, Sendable {
  private struct Push: Sendable {
    var command: BenchProtocol.Command
    var timer: FIFOTimer
    var done: CheckedContinuation<BenchProtocol.LoadResult, Never>
  }

  private let output: WorkerOutput
  private let executor: EventLoopExecutor?
  private let pushes: AsyncStream<Push>
  private let pushContinuation: AsyncStream<Push>.Continuation
  private let current = Mutex<FIFOTimer?>(nil)

  init(output: WorkerOutput, executor: EventLoopExecutor?) {
    self.output = output
    self.executor = executor
    (self.pushes, self.pushContinuation) = AsyncStream.makeStream()
  }

  func close() { self.pushContinuation.finish() }

  /// Runs a listener → dialer load (warm-up first) on the dialer's getTask stream.
  func push(_ command: BenchProtocol.Command) async -> BenchProtocol.LoadResult {
    var warm = command
    if command.warmup > 0 {
      warm.count = command.warmup
      _ = await self.pushOnce(warm)
    }
    return await self.pushOnce(command)
  }

  private func pushOnce(_ command: BenchProtocol.Command) async -> BenchProtocol.LoadResult {
    let timer = FIFOTimer()
    self.current.withLock { $0 = timer }
    return await withCheckedContinuation { continuation in
      self.pushContinuation.yield(Push(command: command, timer: timer, done: continuation))
    }
  }

  func sendStatus(request: StreamingServerRequest<Contact_ClientMsg>, context: ServerContext) async throws -> StreamingServerResponse<Contact_Result> {
    StreamingServerResponse { writer in
      try await withTaskExecutorPreference(self.executor) {
        for try await message in request.messages {
          var result = Contact_Result()
          result.ret = message.msg
          try await writer.write(result)
        }
      }
      return [:]
    }
  }

  func getTask(request: StreamingServerRequest<Contact_Empty>, context: ServerContext) async throws -> StreamingServerResponse<Contact_ServerMsg> {
    StreamingServerResponse { writer in
      self.output.emit(.init(event: "connected", peer: "raw-dialer"))
      try await withTaskExecutorPreference(self.executor) {
        for await push in self.pushes {
          let message = Contact_ServerMsg.with { $0.task = String(repeating: "x", count: push.command.payload) }
          do {
            let (latencies, seconds) = try await push.timer.run(count: push.command.count, window: push.command.window) { _ in
              try await writer.write(message)
            }
            push.done.resume(returning: .init(requests: latencies.count, errors: push.command.count - latencies.count, seconds: seconds, latency: .init(microseconds: latencies)))
          } catch {
            push.done.resume(returning: .init(requests: 0, errors: push.command.count, seconds: 0, latency: .init(microseconds: []), firstError: "\(error)"))
            throw error
          }
        }
      }
      return [:]
    }
  }

  func tellResult(request: StreamingServerRequest<Contact_Result>, context: ServerContext) async throws -> StreamingServerResponse<Contact_Empty> {
    StreamingServerResponse { writer in
      try await withTaskExecutorPreference(self.executor) {
        for try await _ in request.messages {
          self.current.withLock { $0 }?.replied()
        }
        try await writer.write(Contact_Empty())
      }
      return [:]
    }
  }
}
