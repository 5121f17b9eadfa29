internal import ContactProto
internal import GRPCCore
internal import GRPCNIOTransportHTTP2

extension Peer {
  /// What a peer's standard gRPC health service (`grpc.health.v1.Health/Check`) answers.
  public enum HealthStatus: String, Sendable, Hashable {
    /// The peer runs and takes requests.
    case serving = "SERVING"
    /// The peer is draining (SIGTERM, ``beginGracefulShutdown()``) or not ready.
    case notServing = "NOT_SERVING"
    /// The service asked for is not one the peer knows (`""` and `Contact` are).
    case serviceUnknown = "SERVICE_UNKNOWN"
    /// The peer answered without saying.
    case unknown = "UNKNOWN"
  }

  /// Asks the peer at `target` for its health, over a connection made as this peer's dialers
  /// make theirs: mutual TLS with this peer's certificate, the listener's certificate checked
  /// against the CA and its name (the pinned identity of `NAME@HOST:PORT`, else the host).
  /// Needs no ``run()``: `peer-agent health` is a peer that only asks this.
  ///
  /// - Throws: ``PeerAgentError`` (`notConnected`) saying why there is no answer: refused,
  ///   unreachable, its certificate refused, or no answer within `timeout`.
  public func checkHealth(of target: Target, service: String = "", timeout: Duration = .seconds(5)) async throws -> HealthStatus {
    let diagnostics = DialDiagnostics()
    let transport = try self.context.makeClientTransport(to: target, on: nil, diagnostics: diagnostics)
    var request = Grpc_Health_V1_HealthCheckRequest()
    request.service = service
    var options = CallOptions.defaults
    options.timeout = timeout
    options.waitForReady = false
    do {
      let response = try await withGRPCClient(transport: transport) { client in
        try await Grpc_Health_V1_Health.Client(wrapping: client).check(request: ClientRequest(message: request), options: options)
      }
      switch response.status {
      case .serving: return .serving
      case .notServing: return .notServing
      case .serviceUnknown: return .serviceUnknown
      default: return .unknown
      }
    } catch let error as RPCError where error.code == .notFound {
      return .serviceUnknown
    } catch {
      let reason = diagnostics.failure ?? (error as? RPCError).map { "\($0.code): \($0.message)" } ?? "\(error)"
      throw PeerAgentError(code: .notConnected, message: "no health answer from \(target): \(reason)", cause: error)
    }
  }
}
