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

  enum CodingKeys: String, CodingKey {
    case peer, mode, version, listening, links
    case outboxDepth = "outbox_depth"
    case handling
  }

  /// Every key, always: `listening` is `null` for a peer that only dials.
  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(self.peer, forKey: .peer)
    try container.encode(self.mode, forKey: .mode)
    try container.encode(self.version, forKey: .version)
    try container.encode(self.listening, forKey: .listening)
    try container.encode(self.links, forKey: .links)
    try container.encode(self.outboxDepth, forKey: .outboxDepth)
    try container.encode(self.handling, forKey: .handling)
  }

  /// Creates a status (for tests of code that reads one).
  public init(
    peer: String,
    mode: String,
    version: String = PeerAgentVersion.current,
    listening: String? = nil,
    links: [Link],
    outboxDepth: Int,
    handling: Int = 0
  ) {
    self.peer = peer
    self.mode = mode
    self.version = version
    self.listening = listening
    self.links = links
    self.outboxDepth = outboxDepth
    self.handling = handling
  }
}
