internal import ContactProto
internal import GRPCCore
internal import PeerAgent
private import Synchronization
internal import SwiftProtobuf

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
