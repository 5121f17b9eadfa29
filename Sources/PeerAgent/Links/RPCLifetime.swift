internal import GRPCCore

/// Ends a server-side stream at its deadline (`grpc-timeout`) with `DEADLINE_EXCEEDED`.
///
/// grpc-swift-2 signals a passed deadline through the RPC's cancellation handle, not by
/// cancelling the task that produces the response: a stream held open by the remote would
/// otherwise outlive its deadline, keeping its slot of the connection's concurrent streams and
/// what it holds. Other cancellations (the remote reset the stream, the server stops) keep their
/// own paths: the request stream ends, or the goodbye is written.
enum RPCLifetime {
  /// Runs `body` until it returns, or until the deadline `metadata` carries passes (then `body`
  /// is cancelled, and this throws `DEADLINE_EXCEEDED`).
  static func run(
    _ context: ServerContext,
    metadata: Metadata,
    started: ContinuousClock.Instant = .now,
    _ body: @escaping @Sendable () async throws -> GRPCCore.Metadata
  ) async throws -> GRPCCore.Metadata {
    guard let timeout = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }).flatMap(Self.parse) else {
      return try await body()
    }
    return try await withThrowingTaskGroup(of: GRPCCore.Metadata?.self) { group in
      group.addTask { try await body() }
      group.addTask {
        try await Task.sleep(until: started.advanced(by: timeout), clock: .continuous)
        return nil
      }
      defer { group.cancelAll() }
      guard case .some(.some(let metadata)) = try await group.next() else {
        throw RPCError(code: .deadlineExceeded, message: "the call's deadline passed (grpc-timeout \(timeout))")
      }
      return metadata
    }
  }

  /// A `grpc-timeout` value (1 to 8 digits and a unit, `H M S m u n`) as a duration.
  static func parse(_ value: String) -> Duration? {
    guard GRPCTimeoutGuard.isValid(value), let amount = Int64(value.dropLast()), let unit = value.last else { return nil }
    switch unit {
    case "H": return .seconds(amount * 3_600)
    case "M": return .seconds(amount * 60)
    case "S": return .seconds(amount)
    case "m": return .milliseconds(amount)
    case "u": return .microseconds(amount)
    case "n": return .nanoseconds(amount)
    default: return nil
    }
  }
}
