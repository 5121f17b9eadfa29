package import Logging

/// What a hub of a cluster (the `PeerAgentCluster` module) may do with its peer: the one seam
/// between the core and the cluster's runtime. The cluster sees the set of connected names and
/// is woken when it changes (a link-table event, not a poll), hands in requests other hubs
/// accepted and replies other hubs took, and binds names to keys across hubs — nothing else of
/// the peer's internals.
package struct HubSeam: Sendable {
  private let context: LinkContext

  init(_ context: LinkContext) {
    self.context = context
  }

  /// This peer's name.
  package var name: String { self.context.ownName }

  /// The peer's logger.
  package var logger: Logger { self.context.logger }

  /// Where the hub counts what it does through the database (metrics, status).
  package var activity: ClusterActivity? { self.context.cluster }

  /// The names of the remotes that can be sent to now.
  package var connectedNames: Set<String> { self.context.table.connectedNames }

  /// Returns when a remote connected or went since the last call returned, else after
  /// `atMost` (or on cancellation). One caller: the registry's lease loop.
  package func membershipChanged(atMost duration: Duration) async {
    await self.context.table.membership.wait(atMost: duration)
  }

  /// The key each connected name proved, as written in a lease (``KeyFingerprint``'s text).
  package var boundKeys: [String: String] {
    self.context.keys.boundKeys.mapValues(\.description)
  }

  /// Takes in a request another hub of the cluster accepted for a remote connected here, and
  /// writes it on the remote's link. Returns `false` when it is known already, past its time
  /// to live, or the peer is closing.
  @discardableResult
  package func adopt(_ record: OutgoingRecord) -> Bool {
    guard let accepted = self.context.outbox.adopt(record) else { return false }
    self.context.table.write(accepted)
    return true
  }

  /// Hands the caller waiting for request `answer.id` the reply another hub took for it.
  /// Returns whether a caller was waiting for it.
  @discardableResult
  package func resolve(_ answer: Answer) -> Bool {
    self.context.outbox.resolve(answer) == .resolved
  }

  /// Makes `registry` the keeper of "one name, one key" beyond this peer: every stream is
  /// refused when another hub binds its name to another key.
  package func bindKeys(to registry: any SharedKeyRegistry) {
    self.context.sharedKeys.withLock { $0 = registry }
  }

  /// Ends this peer's links of `name`: another hub of the cluster holds it with another key
  /// (`bound`; both connected at the same moment, before either lease was written).
  package func refuseTakeover(of name: String, bound: String?) {
    let presented = self.context.keys.boundKeys[name]?.description
    let conflict = SharedKeyConflict(name: name, bound: bound ?? "?", presented: presented ?? "?")
    self.context.report(conflict, "ended a link: its name is connected to another hub of the cluster with another key")
    self.context.keys.end(name, because: conflict.description)
  }
}

extension Peer {
  /// The seam a hub of a cluster uses (``HubSeam``).
  package var hubSeam: HubSeam { HubSeam(self.context) }
}
