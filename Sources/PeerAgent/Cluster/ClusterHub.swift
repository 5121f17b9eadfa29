private import Foundation
public import Logging
internal import NIOCore
internal import PostgresNIO
private import Synchronization

/// What a hub of a cluster does besides being a peer, all through the shared database:
///
/// - **registry**: a lease for every agent connected here, renewed every third of
///   ``Peer/Config/Cluster/leaseDuration`` and dropped when the agent goes; a hub that dies
///   stops renewing, and its leases lapse;
/// - **delivery**: requests other hubs accepted for agents that hold a lease here are claimed
///   (`FOR UPDATE SKIP LOCKED`, so two hubs never take the same rows at once) and written on
///   the agents' links, their replies recorded in the rows;
/// - **replies**: replies other hubs recorded for this hub's own requests are handed to the
///   waiting callers.
///
/// Each loop is woken by `NOTIFY` and also looks every ``Peer/Config/Cluster/pollInterval``:
/// a notification lost (a listener reconnecting) delays work, never loses it.
final class ClusterHub: Sendable {
  let peer: Peer
  let store: PostgresDeliveryStore
  let cluster: Peer.Config.Cluster
  let logger: Logger
  private let claims = Doorbell()
  private let answers = Doorbell()
  private let leases = Doorbell()
  /// The agents this hub holds leases for, as last written.
  private let leased = Mutex<Set<String>>([])

  init(peer: Peer, store: PostgresDeliveryStore, cluster: Peer.Config.Cluster, logger: Logger) {
    self.peer = peer
    self.store = store
    self.cluster = cluster
    var logger = logger
    logger[metadataKey: "peer"] = "\(peer.name)"
    self.logger = logger
  }

  private var hub: String { self.store.hub }
  private var client: PostgresClient { self.store.client }

  /// Runs the loops until cancelled.
  func run() async {
    await withDiscardingTaskGroup { group in
      group.addTask { await self.keepLeases() }
      group.addTask { await self.deliverClaimed() }
      group.addTask { await self.takeAnswers() }
      group.addTask {
        await self.listen(on: "peer_agent_outbox") { agent in
          if self.leased.withLock({ $0.contains(agent) }) { self.claims.ring() }
        }
      }
      group.addTask {
        await self.listen(on: "peer_agent_answers") { origin in
          if origin == self.hub { self.answers.ring() }
        }
      }
    }
  }

  /// Gives up every lease this hub holds (its agents are free to be claimed at once by the
  /// hubs they move to). Called when the hub stops.
  func releaseLeases() async {
    do {
      try await self.client.query("DELETE FROM peer_agent_leases WHERE hub = \(self.hub)", logger: self.logger)
      try await self.client.query(
        "DELETE FROM peer_agent_hubs WHERE hub = \(self.hub) AND run = \(self.store.run)",
        logger: self.logger
      )
    } catch {
      self.logger.warning("cannot release this hub's leases; they lapse on their own", metadata: ["error": "\(error)"])
    }
  }

  // MARK: - Registry

  private func keepLeases() async {
    let renewal = self.cluster.leaseDuration / 3
    var lastRenewal = ContinuousClock.now - renewal
    var written: Set<String> = []
    while !Task.isCancelled {
      let connected = self.peer.context.table.connectedNames
      let now = ContinuousClock.now
      if connected != written || now - lastRenewal >= renewal {
        do {
          let gone = Array(written.subtracting(connected))
          if !gone.isEmpty {
            try await self.client.query(
              "DELETE FROM peer_agent_leases WHERE hub = \(self.hub) AND agent = ANY(\(gone))",
              logger: self.logger
            )
          }
          let milliseconds = Int64(self.cluster.leaseDuration.milliseconds)
          // This run of the hub is alive: what it accepted, it is handling.
          try await self.client.query(
            """
            INSERT INTO peer_agent_hubs (hub, run, expires_at) VALUES (\(self.hub), \(self.store.run), now() + \(milliseconds) * interval '1 millisecond')
            ON CONFLICT (hub) DO UPDATE SET run = excluded.run, expires_at = excluded.expires_at
            """,
            logger: self.logger
          )
          if !connected.isEmpty {
            // The agent is connected here now: this hub holds it, whoever held it before.
            try await self.client.query(
              """
              INSERT INTO peer_agent_leases (agent, hub, expires_at)
              SELECT agent, \(self.hub), now() + \(milliseconds) * interval '1 millisecond' FROM unnest(\(Array(connected))::text[]) AS agent
              ON CONFLICT (agent) DO UPDATE SET hub = excluded.hub, expires_at = excluded.expires_at
              """,
              logger: self.logger
            )
          }
          let arrived = !connected.subtracting(written).isEmpty
          written = connected
          lastRenewal = now
          self.leased.withLock { $0 = connected }
          if arrived { self.claims.ring() }
        } catch {
          self.logger.warning("cannot renew this hub's leases in the cluster database", metadata: ["error": "\(error)"])
        }
      }
      await self.leases.wait(atMost: .milliseconds(100))
    }
  }

  // MARK: - Delivery

  private func deliverClaimed() async {
    while !Task.isCancelled {
      do {
        while try await self.claimBatch() {}
      } catch {
        self.logger.warning("cannot claim requests for this hub's agents", metadata: ["error": "\(error)"])
      }
      await self.claims.wait(atMost: self.cluster.pollInterval)
    }
  }

  /// Claims one batch of requests that other hubs accepted for agents leased here, and writes
  /// them on the agents' links. Returns whether there may be more.
  private func claimBatch() async throws -> Bool {
    let limit = 512
    let rows = try await self.client.query(
      """
      UPDATE peer_agent_outbox SET claimed_by = \(self.hub)
      WHERE id IN (
        SELECT id FROM peer_agent_outbox
        WHERE answered_by IS NULL AND origin <> \(self.hub) AND claimed_by IS DISTINCT FROM \(self.hub)
          AND peer IN (SELECT agent FROM peer_agent_leases WHERE hub = \(self.hub) AND expires_at > now())
        ORDER BY sequence LIMIT \(limit)
        FOR UPDATE SKIP LOCKED
      )
      RETURNING sequence, id, peer, text, expires_at
      """,
      logger: self.logger
    )
    var claimed: [(Int64, OutgoingRecord)] = []
    for try await (sequence, id, peer, text, expiresAt) in rows.decode((Int64, String, String, String, Double).self) {
      claimed.append((sequence, OutgoingRecord(id: id, peer: peer, text: text, expiresAt: expiresAt)))
    }
    claimed.sort { $0.0 < $1.0 }
    let outbox = self.peer.context.outbox
    let table = self.peer.context.table
    for (_, record) in claimed {
      guard let accepted = outbox.adopt(record) else { continue }
      table.write(accepted)
    }
    if !claimed.isEmpty {
      self.logger.debug("claimed requests from other hubs", metadata: ["count": "\(claimed.count)"])
    }
    return claimed.count == limit
  }

  // MARK: - Replies

  private func takeAnswers() async {
    while !Task.isCancelled {
      do {
        let rows = try await self.client.query(
          """
          SELECT id, answered_by, answered_verified, answer, answer_error, answer_code FROM peer_agent_outbox
          WHERE origin = \(self.hub) AND answered_by IS NOT NULL AND answered_at_hub IS DISTINCT FROM \(self.hub)
          ORDER BY sequence LIMIT 4096
          """,
          logger: self.logger
        )
        let outbox = self.peer.context.outbox
        for try await (id, from, verified, text, error, code) in rows.decode(
          (String, String, Bool?, String?, String?, String?).self
        ) {
          // From the hub that holds the agent: the reply carries the agent's verified name, and
          // is taken only if that is whom the request was for.
          outbox.resolve(
            Answer(id: id, text: text ?? "", error: error, code: code, from: PeerIdentity(name: from, isVerified: verified ?? false))
          )
        }
      } catch {
        self.logger.warning("cannot read replies from the cluster database", metadata: ["error": "\(error)"])
      }
      await self.answers.wait(atMost: self.cluster.pollInterval)
    }
  }

  // MARK: - Notifications

  /// Listens on `channel` until cancelled, reconnecting after a failure; hands each payload
  /// to `notified`.
  private func listen(on channel: String, _ notified: @escaping @Sendable (String) -> Void) async {
    while !Task.isCancelled {
      do {
        try await self.client.withConnection { connection in
          try await connection.listen(on: channel) { notifications in
            // Listening now: what was written before may have been missed.
            self.claims.ring()
            self.answers.ring()
            for try await notification in notifications {
              notified(notification.payload)
            }
          }
        }
      } catch {
        if Task.isCancelled { return }
        self.logger.notice("lost the cluster database's notifications; listening again", metadata: ["error": "\(error)"])
      }
      try? await Task.sleep(for: .seconds(1))
    }
  }
}

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
    var configuration = PostgresClient.Configuration(
      host: database.host, port: database.port, username: database.user, password: database.password, database: database.name, tls: .disable
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
              host: database.host, port: database.port, username: database.user, password: database.password, database: database.name, tls: .disable
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
          message: "cannot use the cluster database \(cluster.database): \(Self.describe(error))",
          cause: error
        )
      }
      let peer = try Peer(config: config, store: store, logger: logger, handler: handler)
      let clusterHub = ClusterHub(peer: peer, store: store, cluster: cluster, logger: logger)
      group.addTask { await store.runWriter() }
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
    await store.flush()
    store.close()
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
