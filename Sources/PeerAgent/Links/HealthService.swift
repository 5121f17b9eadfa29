internal import ContactProto
internal import GRPCCore

/// The standard gRPC health service (`grpc.health.v1.Health`) on every listener: `SERVING`
/// while the peer runs, `NOT_SERVING` from the moment it starts to drain. The whole server
/// (`""`) and the `Contact` service are known; any other name is `NOT_FOUND` on `Check` and
/// `SERVICE_UNKNOWN` on `Watch`, as the protocol says.
///
/// It answers without the `Contact` service's identity checks: mutual TLS has already verified
/// the caller's certificate at the handshake, and the status is all it tells.
struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
  typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

  let lifecycle: PeerLifecycle

  /// The services this listener serves, by the names health checks use.
  static let services: Set<String> = ["", "Contact"]

  private static func response(_ status: Status) -> Grpc_Health_V1_HealthCheckResponse {
    var response = Grpc_Health_V1_HealthCheckResponse()
    response.status = status
    return response
  }

  private var status: Status {
    self.lifecycle.acceptsRequests ? .serving : .notServing
  }

  func check(
    request: Grpc_Health_V1_HealthCheckRequest,
    context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard Self.services.contains(request.service) else {
      throw RPCError(code: .notFound, message: "unknown service '\(request.service)': this listener serves \"\" and \"Contact\"")
    }
    return Self.response(self.status)
  }

  func watch(
    request: Grpc_Health_V1_HealthCheckRequest,
    response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    guard Self.services.contains(request.service) else {
      try await response.write(Self.response(.serviceUnknown))
      // The status of an unknown service never changes: hold the stream until the caller ends
      // it, or the peer stops.
      var version = self.lifecycle.version
      while self.lifecycle.acceptsRequests { version = try await self.lifecycle.nextChange(after: version) }
      return
    }
    var version = self.lifecycle.version
    var sent: Status?
    while true {
      let now = self.status
      if now != sent {
        try await response.write(Self.response(now))
        sent = now
      }
      // Draining: NOT_SERVING was the last word, and the stream ends so the listener can stop.
      if now == .notServing { return }
      version = try await self.lifecycle.nextChange(after: version)
    }
  }
}
