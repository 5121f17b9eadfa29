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
        try await Self.withDeadline(configuration.options.connectTimeout) {
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
        store = try await Self.withDeadline(configuration.options.connectTimeout + .seconds(1)) {
          try await PostgresDeliveryStore.open(hub: hub, client: client, logger: logger)
        }
      } catch {
        throw PeerAgentError(
          code: .invalidConfiguration,
          message: "cannot use the cluster database \(cluster.database): \(tls.explain(error) ?? Self.describe(error))",
          cause: error
        )
      }
      let peer = try Peer(config: config, store: store, logger: logger, handler: handler)
      let clusterHub = ClusterHub(seam: peer.hubSeam, store: store, cluster: cluster, logger: logger)
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

  /// Runs `body`, failing with ``TimedOut`` after `limit`.
  private static func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask { try await body() }
      group.addTask {
        try await Task.sleep(for: limit)
        return nil
      }
      defer { group.cancelAll() }
      guard let first = try await group.next(), let value = first else { throw TimedOut(limit: limit) }
      return value
    }
  }

  struct TimedOut: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "no answer within \(limit.milliseconds) ms (is PostgreSQL running there?)" }
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
