/// What a peer is doing now: who it is, its links and what it owes them (``Peer/status``).
/// `peer-agent run --metrics` serves it as JSON at `/status`; `peer-agent status` prints it.
public struct PeerStatus: Sendable, Hashable, Codable {
  /// One remote this peer has heard of.
  public struct Link: Sendable, Hashable, Codable {
    /// The remote's identity (its certificate's name), or in plaintext its address.
    public var peer: String
    /// `connecting`, `ready`, `degraded` or `down`.
    public var state: String
    /// The kind of its current (else latest) link: `sendStatus` or `getTask`; absent before a
    /// first link.
    public var kind: String?
    /// This peer's requests to it that have no reply yet.
    public var unanswered: Int

    /// Creates one link's status.
    public init(peer: String, state: String, kind: String?, unanswered: Int) {
      self.peer = peer
      self.state = state
      self.kind = kind
      self.unanswered = unanswered
    }

    enum CodingKeys: String, CodingKey {
      case peer, state, kind, unanswered
    }

    /// Every key, always: `kind` is `null` before a first link.
    public func encode(to encoder: any Encoder) throws {
      var container = encoder.container(keyedBy: CodingKeys.self)
      try container.encode(self.peer, forKey: .peer)
      try container.encode(self.state, forKey: .state)
      try container.encode(self.kind, forKey: .kind)
      try container.encode(self.unanswered, forKey: .unanswered)
    }
  }

  /// What a hub of a cluster does through the shared database.
  public struct Cluster: Sendable, Hashable, Codable {
    /// The database, without its password.
    public var database: String
    /// Whether the database answered the hub's last operation.
    public var databaseReachable: Bool
    /// Why it does not, while it does not.
    public var databaseProblem: String?
    /// Agents this hub holds leases for now.
    public var leases: Int
    /// Requests other hubs accepted that this hub claimed for its agents, since it started.
    public var claimed: Int
    /// This hub's own requests that other hubs delivered (their replies came back through
    /// the database), since it started.
    public var forwarded: Int
    /// Transactions written to the database since the hub started.
    public var writes: Int
    /// Their mean duration in milliseconds; `nil` before the first.
    public var writeMillisecondsMean: Double?

    public init(
      database: String, databaseReachable: Bool = true, databaseProblem: String? = nil,
      leases: Int, claimed: Int, forwarded: Int, writes: Int, writeMillisecondsMean: Double?
    ) {
      self.database = database
      self.databaseReachable = databaseReachable
      self.databaseProblem = databaseProblem
      self.leases = leases
      self.claimed = claimed
      self.forwarded = forwarded
      self.writes = writes
      self.writeMillisecondsMean = writeMillisecondsMean
    }

    enum CodingKeys: String, CodingKey {
      case database
      case databaseReachable = "database_reachable"
      case databaseProblem = "database_problem"
      case leases, claimed, forwarded, writes
      case writeMillisecondsMean = "write_ms_mean"
    }

    /// Every key, always: `write_ms_mean` is `null` before the first write.
    public func encode(to encoder: any Encoder) throws {
      var container = encoder.container(keyedBy: CodingKeys.self)
      try container.encode(self.database, forKey: .database)
      try container.encode(self.databaseReachable, forKey: .databaseReachable)
      try container.encode(self.databaseProblem, forKey: .databaseProblem)
      try container.encode(self.leases, forKey: .leases)
      try container.encode(self.claimed, forKey: .claimed)
      try container.encode(self.forwarded, forKey: .forwarded)
      try container.encode(self.writes, forKey: .writes)
      try container.encode(self.writeMillisecondsMean, forKey: .writeMillisecondsMean)
    }
  }

  /// This peer's name.
  public var peer: String
  /// `single` or `dual`.
  public var mode: String
  /// ``PeerAgentVersion/current``.
  public var version: String
  /// Where it listens, once bound; absent for a peer that only dials.
  public var listening: String?
  /// Every remote it has heard of, sorted by name.
  public var links: [Link]
  /// Every request of this peer that has no reply yet, to any remote.
  public var outboxDepth: Int
  /// Requests being handled now.
  public var handling: Int
  /// For a hub of a cluster, what it does through the database; `nil` otherwise.
  public var cluster: Cluster?

  enum CodingKeys: String, CodingKey {
    case peer, mode, version, listening, links
    case outboxDepth = "outbox_depth"
    case handling, cluster
  }

  /// Every key, always: `listening` is `null` for a peer that only dials, `cluster` for a
  /// peer on its own.
  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(self.peer, forKey: .peer)
    try container.encode(self.mode, forKey: .mode)
    try container.encode(self.version, forKey: .version)
    try container.encode(self.listening, forKey: .listening)
    try container.encode(self.links, forKey: .links)
    try container.encode(self.outboxDepth, forKey: .outboxDepth)
    try container.encode(self.handling, forKey: .handling)
    try container.encode(self.cluster, forKey: .cluster)
  }

  /// Creates a status (for tests of code that reads one).
  public init(
    peer: String,
    mode: String,
    version: String = PeerAgentVersion.current,
    listening: String? = nil,
    links: [Link],
    outboxDepth: Int,
    handling: Int = 0,
    cluster: Cluster? = nil
  ) {
    self.peer = peer
    self.mode = mode
    self.version = version
    self.listening = listening
    self.links = links
    self.outboxDepth = outboxDepth
    self.handling = handling
    self.cluster = cluster
  }
}
