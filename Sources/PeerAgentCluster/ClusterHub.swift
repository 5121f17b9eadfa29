private import Foundation
internal import Logging
internal import PeerAgent
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
final class ClusterHub: SharedKeyRegistry {
  /// What the hub may do with its peer: nothing else of the peer's internals.
  let seam: HubSeam
  let store: PostgresDeliveryStore
  let cluster: Peer.Config.Cluster
  let logger: Logger
  /// Whether the database answers, said once per change.
  let health: DatabaseHealth
  /// The cluster's events, for the application.
  private let events: @Sendable (PeerCluster.Event) -> Void
  private let claims = Doorbell()
  private let answers = Doorbell()
  /// The agents this hub holds leases for, as last written.
  private let leased = Mutex<Set<String>>([])

  init(
    seam: HubSeam,
    store: PostgresDeliveryStore,
    cluster: Peer.Config.Cluster,
    logger: Logger,
    events: @escaping @Sendable (PeerCluster.Event) -> Void
  ) {
    self.seam = seam
    self.store = store
    self.cluster = cluster
    var logger = logger
    logger[metadataKey: "peer"] = "\(seam.name)"
    self.logger = logger
    self.events = events
    let logged = logger
    self.health = DatabaseHealth(activity: seam.activity) { event in
      switch event {
      case .databaseUnreachable(let reason):
        logged.warning("the cluster database is unreachable: requests this hub accepts fail, requests across hubs wait", metadata: ["reason": "\(reason)", "event": "cluster"])
      case .databaseReachable(let after):
        logged.notice("the cluster database answers again", metadata: ["after_ms": "\(after.milliseconds)", "event": "cluster"])
      case .joined:
        break
      }
      events(event)
    }
    store.writer.report(to: self.health)
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

  /// The key another hub holds `name`'s live lease with, if any: one name, one key across the
  /// cluster (``SharedKeyRegistry``).
  func boundKey(of name: String) async throws -> String? {
    let rows = try await self.client.query(
      """
      SELECT key FROM peer_agent_leases
      WHERE agent = \(name) AND hub <> \(self.hub) AND expires_at > now() AND key IS NOT NULL
      """,
      logger: self.logger
    )
    for try await key in rows.decode(String.self) { return key }
    return nil
  }

  /// Writes the leases when an agent connects or goes (woken by the link table), and renews
  /// them every third of the lease duration.
  private func keepLeases() async {
    let renewal = self.cluster.leaseDuration / 3
    var lastRenewal = ContinuousClock.now - renewal
    var written: Set<String> = []
    var joined = false
    while !Task.isCancelled {
      let connected = self.seam.connectedNames
      let now = ContinuousClock.now
      var failed = false
      if connected != written || now - lastRenewal >= renewal {
        do {
          let before = written
          let taken = try await self.health.run { try await self.renew(connected: connected, written: before) }
          for name in connected.subtracting(taken) {
            // Both connected at the same moment, before either lease was written.
            let bound = (try? await self.boundKey(of: name)) ?? nil
            self.seam.refuseTakeover(of: name, bound: bound)
          }
          self.seam.activity?.holding(leases: taken.count)
          let arrived = !connected.subtracting(written).isEmpty
          written = connected
          lastRenewal = now
          self.leased.withLock { $0 = connected }
          if arrived { self.claims.ring() }
          if !joined {
            joined = true
            let hubs = (try? await self.health.run { try await self.hubsAlive() }) ?? [self.hub]
            self.events(.joined(database: "\(self.cluster.database)", hubs: hubs))
          }
        } catch {
          failed = true
          // An unreachable database is said once, by DatabaseHealth; anything else here.
          if !DatabaseHealth.isUnreachable(error) {
            self.logger.warning("cannot renew this hub's leases in the cluster database", metadata: ["error": "\(PeerCluster.describe(error))"])
          }
        }
      }
      // Until the next renewal is due, or an agent connects or goes; a second after a failure.
      let untilRenewal = renewal - (ContinuousClock.now - lastRenewal)
      await self.seam.membershipChanged(atMost: failed ? .seconds(1) : max(.milliseconds(10), untilRenewal))
    }
  }

  /// One renewal: drops the leases of agents gone, says this run of the hub is alive, and
  /// takes or renews the leases of the agents connected. Returns the agents whose lease this
  /// hub holds now.
  private func renew(connected: Set<String>, written: Set<String>) async throws -> Set<String> {
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
    guard !connected.isEmpty else { return [] }
    // The agent is connected here now: this hub holds it, whoever held it before — with the
    // same key, or once the other key's lease has lapsed. A name another hub holds with
    // another key is not taken over: its connection here is ended.
    let keys = self.seam.boundKeys
    let names = Array(connected)
    let fingerprints = names.map { keys[$0] ?? "" }
    var taken: Set<String> = []
    let rows = try await self.client.query(
      """
      INSERT INTO peer_agent_leases (agent, hub, key, expires_at)
      SELECT agent, \(self.hub), NULLIF(key, ''), now() + \(milliseconds) * interval '1 millisecond'
      FROM unnest(\(names)::text[], \(fingerprints)::text[]) AS t(agent, key)
      ON CONFLICT (agent) DO UPDATE SET hub = excluded.hub, key = excluded.key, expires_at = excluded.expires_at
      WHERE peer_agent_leases.key IS NULL OR excluded.key IS NULL OR peer_agent_leases.key = excluded.key
        OR peer_agent_leases.expires_at <= now()
      RETURNING agent
      """,
      logger: self.logger
    )
    for try await agent in rows.decode(String.self) { taken.insert(agent) }
    return taken
  }

  /// The hubs whose run is alive now, this one included.
  private func hubsAlive() async throws -> [String] {
    let rows = try await self.client.query("SELECT hub FROM peer_agent_hubs WHERE expires_at > now() ORDER BY hub", logger: self.logger)
    var hubs: [String] = []
    for try await hub in rows.decode(String.self) { hubs.append(hub) }
    return hubs
  }

  // MARK: - Delivery

  private func deliverClaimed() async {
    while !Task.isCancelled {
      do {
        while try await self.health.run({ try await self.claimBatch() }) {}
      } catch where !DatabaseHealth.isUnreachable(error) {
        self.logger.warning("cannot claim requests for this hub's agents", metadata: ["error": "\(PeerCluster.describe(error))"])
      } catch {}
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
    var adopted = 0
    for (_, record) in claimed where self.seam.adopt(record) {
      adopted += 1
    }
    self.seam.activity?.claimed(adopted)
    if !claimed.isEmpty {
      self.logger.debug("claimed requests from other hubs", metadata: ["count": "\(claimed.count)"])
    }
    return claimed.count == limit
  }

  // MARK: - Replies

  private func takeAnswers() async {
    while !Task.isCancelled {
      do {
        try await self.health.run { try await self.takeAnswerBatch() }
      } catch where !DatabaseHealth.isUnreachable(error) {
        self.logger.warning("cannot read replies from the cluster database", metadata: ["error": "\(PeerCluster.describe(error))"])
      } catch {}
      await self.answers.wait(atMost: self.cluster.pollInterval)
    }
  }

  /// Hands this hub's callers the replies other hubs recorded for their requests.
  private func takeAnswerBatch() async throws {
    let rows = try await self.client.query(
      """
      SELECT id, answered_by, answered_verified, answer, answer_error, answer_code FROM peer_agent_outbox
      WHERE origin = \(self.hub) AND answered_by IS NOT NULL AND answered_at_hub IS DISTINCT FROM \(self.hub)
      ORDER BY sequence LIMIT 4096
      """,
      logger: self.logger
    )
    var forwarded = 0
    for try await (id, from, verified, text, error, code) in rows.decode(
      (String, String, Bool?, String?, String?, String?).self
    ) {
      // From the hub that holds the agent: the reply carries the agent's verified name, and
      // is taken only if that is whom the request was for.
      let answer = Answer(id: id, text: text ?? "", error: error, code: code, from: PeerIdentity(name: from, isVerified: verified ?? false))
      if self.seam.resolve(answer) { forwarded += 1 }
    }
    self.seam.activity?.forwarded(forwarded)
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
        if DatabaseHealth.isUnreachable(error) {
          self.health.lost(error)
        } else {
          self.logger.notice("lost the cluster database's notifications; listening again", metadata: ["error": "\(PeerCluster.describe(error))"])
        }
      }
      try? await Task.sleep(for: .seconds(1))
    }
  }
}
