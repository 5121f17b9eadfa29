private import Synchronization

/// What a hub of a cluster does through the shared database, counted for `/metrics` and
/// `/status` (``PeerStatus/cluster``): the leases it holds, the requests it claimed from other
/// hubs for its agents, its own requests other hubs delivered, and how long its writes to
/// PostgreSQL take. The cluster's runtime records (through ``HubSeam``); the core reports.
package final class ClusterActivity: Sendable {
  /// The cluster database, without its password.
  let database: String
  private let metrics: PeerMetrics?
  private let leases = Atomic<Int>(0)
  private let claimedCount = Atomic<Int>(0)
  private let forwardedCount = Atomic<Int>(0)
  private let writes = Atomic<Int>(0)
  private let writeNanoseconds = Atomic<Int>(0)
  /// Whether the database answers; since when it does not, and why.
  private let reachability = Mutex<(reachable: Bool, since: ContinuousClock.Instant, reason: String?)>((true, .now, nil))

  init(database: String, metrics: PeerMetrics?) {
    self.database = database
    self.metrics = metrics
    metrics?.primeCluster()
    metrics?.clusterDatabaseUp(true)
  }

  /// The hub holds leases for `count` agents now.
  package func holding(leases count: Int) {
    self.leases.store(count, ordering: .relaxed)
    self.metrics?.clusterLeases(count)
  }

  /// The hub claimed `count` requests other hubs accepted, for agents connected here.
  package func claimed(_ count: Int) {
    guard count > 0 else { return }
    self.claimedCount.add(count, ordering: .relaxed)
    self.metrics?.clusterClaimed(count)
  }

  /// `count` of this hub's own requests were delivered by other hubs: their replies came
  /// back through the database.
  package func forwarded(_ count: Int) {
    guard count > 0 else { return }
    self.forwardedCount.add(count, ordering: .relaxed)
    self.metrics?.clusterForwarded(count)
  }

  /// One transaction of writes to the database took `duration`.
  package func wrote(_ duration: Duration) {
    self.writes.add(1, ordering: .relaxed)
    self.writeNanoseconds.add(Int(duration.components.seconds) * 1_000_000_000 + Int(duration.components.attoseconds / 1_000_000_000), ordering: .relaxed)
    self.metrics?.clusterWrite(duration)
  }

  /// Whether the database answered the last operation.
  package var databaseReachable: Bool { self.reachability.withLock { $0.reachable } }

  /// Records whether the database answers. Returns, on a change, how long the previous state
  /// lasted (`nil` when nothing changed): the caller says it once.
  package func database(reachable: Bool, reason: String?) -> Duration? {
    let changed: Duration? = self.reachability.withLock { state in
      guard state.reachable != reachable else { return nil }
      let lasted = ContinuousClock.now - state.since
      state = (reachable, .now, reachable ? nil : reason)
      return lasted
    }
    if changed != nil { self.metrics?.clusterDatabaseUp(reachable) }
    return changed
  }

  /// The figures now, for ``PeerStatus``.
  var status: PeerStatus.Cluster {
    let writes = self.writes.load(ordering: .relaxed)
    let total = Double(self.writeNanoseconds.load(ordering: .relaxed))
    let reachability = self.reachability.withLock { $0 }
    return PeerStatus.Cluster(
      database: self.database,
      databaseReachable: reachability.reachable,
      databaseProblem: reachability.reason,
      leases: self.leases.load(ordering: .relaxed),
      claimed: self.claimedCount.load(ordering: .relaxed),
      forwarded: self.forwardedCount.load(ordering: .relaxed),
      writes: writes,
      writeMillisecondsMean: writes == 0 ? nil : (total / Double(writes) / 1_000_000 * 1000).rounded() / 1000
    )
  }
}
