public import Logging
internal import NIOCore
public import PeerAgent
internal import PostgresNIO

/// Runs a peer as one hub of a cluster that shares a PostgreSQL database
/// (``Peer/Config/cluster``): its outbox and de-duplication window live in the database, it
/// holds leases for the agents connected to it, delivers the requests other hubs accept for
/// them, and takes the replies its own requests get through other hubs.
///
/// ```swift
/// try await PeerCluster.run(config: config) { request in "ack" } body: { hub in
///   try await hub.run()
/// }
/// ```
public enum PeerCluster {
  /// Connects to the cluster database (creating or migrating its schema), makes the peer, runs
  /// `body` with it, and — once `body` returns — gives up the hub's leases, writes what is
  /// pending and disconnects.
  ///
  /// - Throws: ``PeerAgentError`` (`invalidConfiguration`) when the configuration has no
  ///   cluster or no name, or the database cannot be reached; what `body` throws.
  public static func run<Result: Sendable>(
    config: Peer.Config,
    logger: Logger = Logger(label: "peer-agent"),
    events: @escaping @Sendable (Event) -> Void = { _ in },
    handler: @escaping Peer.Handler,
    body: @escaping @Sendable (Peer) async throws -> Result
  ) async throws -> Result {
    guard let cluster = config.cluster else {
      throw PeerAgentError(code: .invalidConfiguration, message: "the configuration has no cluster database")
    }
    guard let hub = config.name else {
      throw PeerAgentError(code: .invalidConfiguration, message: "a hub of a cluster needs a name (Config.name, --name)")
    }
    guard config.mode == .single, config.listen != nil else {
      throw PeerAgentError(
        code: .invalidConfiguration,
        message: "a hub of a cluster listens in single-channel mode (--mode single --listen HOST:PORT): its agents dial it"
      )
    }
    let logger = {
      var logger = logger
      logger[metadataKey: "peer"] = "\(hub)"
      return logger
    }()
    let database = cluster.database
    try database.checkTransport()
    let tls = try ClusterTLS(database)
    var configuration = PostgresClient.Configuration(
      host: database.host, port: database.port, username: database.user, password: database.password, database: database.name,
      tls: tls.client
    )
    configuration.options.maximumConnections = 8
    configuration.options.connectTimeout = .seconds(5)
    let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { await client.run() }
      defer { group.cancelAll() }
      let store: PostgresDeliveryStore
      do {
        // One connection first, to say at once what is wrong (refused, no such database, a
        // password refused): the pool would only retry in silence until its timeout.
        try await DatabaseHealth.withDeadline(configuration.options.connectTimeout) {
          let connection = try await PostgresConnection.connect(
            on: PostgresClient.defaultEventLoopGroup.next(),
            configuration: .init(
              host: database.host, port: database.port, username: database.user, password: database.password, database: database.name,
              tls: tls.connection
            ),
            id: 0,
            logger: logger
          )
          try await connection.close()
        }
        store = try await DatabaseHealth.withDeadline(configuration.options.connectTimeout + .seconds(1)) {
          try await PostgresDeliveryStore.open(hub: hub, client: client, logger: logger)
        }
      } catch {
        throw PeerAgentError(
          code: .invalidConfiguration,
          message: "cannot use the cluster database \(cluster.database): \(tls.explain(error) ?? Self.explainConnection(error, to: database) ?? Self.describe(error))",
          cause: error
        )
      }
      let peer = try Peer(config: config, store: store, logger: logger, handler: handler)
      let clusterHub = ClusterHub(seam: peer.hubSeam, store: store, cluster: cluster, logger: logger, events: events)
      // One name, one key across the hubs: a stream is refused when another hub holds its
      // name with another key.
      peer.hubSeam.bindKeys(to: clusterHub)
      if let activity = peer.hubSeam.activity {
        store.writer.observeCommits { activity.wrote($0) }
      }
      group.addTask { await store.writer.run() }
      group.addTask { await clusterHub.run() }
      let result: Result
      do {
        result = try await body(peer)
      } catch {
        await Self.finish(clusterHub, store)
        throw error
      }
      await Self.finish(clusterHub, store)
      return result
    }
  }

  private static func finish(_ hub: ClusterHub, _ store: PostgresDeliveryStore) async {
    await hub.releaseLeases()
    await store.writer.flush()
    store.writer.close()
  }

  /// A connection that could not be made, in words: nothing listening, a name that does not
  /// resolve, no route. postgres-nio says it as a dump of its connection attempts.
  static func explainConnection(_ error: any Error, to database: Peer.Config.Cluster.Database) -> String? {
    let text = String(reflecting: error) + " " + ErrorChain.rootCause(error)
    let address = "\(database.host.contains(":") ? "[\(database.host)]" : database.host):\(database.port)"
    if let error = error as? DatabaseHealth.NoAnswer {
      return "\(error) from \(address): is PostgreSQL running there?"
    }
    if text.contains("Connection refused") || text.contains("connection refused") {
      return "nothing accepts connections at \(address) (connection refused): is PostgreSQL running there, on that port?"
    }
    if text.contains("NXDOMAIN") || text.contains("resolve") || text.contains("Name or service not known") {
      return "cannot resolve the host '\(database.host)'"
    }
    if text.contains("No route to host") || text.contains("Network is unreachable") {
      return "no route to \(address)"
    }
    return nil
  }

  /// A PostgreSQL error in a line: the server's message when there is one.
  static func describe(_ error: any Error) -> String {
    if let error = error as? PostgresTransactionError {
      return describe(error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError ?? error)
    }
    if let error = error as? PSQLError {
      if let message = error.serverInfo?[.message] { return message }
      if let underlying = error.underlying { return ErrorChain.rootCause(underlying) }
      return "\(error.code)"
    }
    return "\(error)"
  }
}
