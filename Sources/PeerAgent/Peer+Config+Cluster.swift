extension Peer.Config {
  /// Hubs that share one PostgreSQL database: who is connected where, the outbox and the
  /// de-duplication window. Any hub can send to any agent connected to any hub of the cluster;
  /// agents fail over along a list of hubs (``Peer/Target/failover``).
  public struct Cluster: Sendable, Hashable {
    /// Where the database is.
    public var database: Database
    /// How long a hub's claim on an agent (a lease) lasts without renewal: a hub that dies
    /// loses its agents to other hubs within this time, or at once when they reconnect
    /// elsewhere. Renewed every third of it.
    public var leaseDuration: Duration
    /// How often a hub looks for requests addressed to its agents and for replies to its own
    /// requests, besides being woken by the database (`LISTEN`/`NOTIFY`, a wake-up only).
    public var pollInterval: Duration

    /// Creates a cluster configuration.
    public init(database: Database, leaseDuration: Duration = .seconds(6), pollInterval: Duration = .seconds(1)) {
      self.database = database
      self.leaseDuration = leaseDuration
      self.pollInterval = pollInterval
    }

    /// A PostgreSQL database, as in `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
    public struct Database: Sendable, Hashable, CustomStringConvertible {
      public var user: String
      public var password: String?
      public var host: String
      public var port: Int
      public var name: String

      public init(user: String, password: String? = nil, host: String, port: Int = 5432, name: String) {
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.name = name
      }

      /// Parses `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `postgres://`); an
      /// IPv6 host in brackets.
      ///
      /// - Throws: ``PeerAgentError`` (`invalidConfiguration`) naming what is wrong.
      public init(parsing text: String) throws {
        func invalid(_ reason: String) -> PeerAgentError {
          PeerAgentError(
            code: .invalidConfiguration,
            message: "invalid cluster database '\(Self.redacted(text))': \(reason) (expected postgresql://USER@HOST:PORT/DATABASE)"
          )
        }
        var rest: Substring
        if text.hasPrefix("postgresql://") {
          rest = text.dropFirst("postgresql://".count)
        } else if text.hasPrefix("postgres://") {
          rest = text.dropFirst("postgres://".count)
        } else {
          throw invalid("it must start with postgresql://")
        }
        guard let at = rest.lastIndex(of: "@") else { throw invalid("missing USER@") }
        let credentials = rest[..<at]
        rest = rest[rest.index(after: at)...]
        let user: Substring
        var password: String?
        if let colon = credentials.firstIndex(of: ":") {
          user = credentials[..<colon]
          password = String(credentials[credentials.index(after: colon)...])
        } else {
          user = credentials
        }
        guard !user.isEmpty else { throw invalid("missing user name") }
        guard let slash = rest.firstIndex(of: "/") else { throw invalid("missing /DATABASE") }
        let hostPort = rest[..<slash]
        var database = rest[rest.index(after: slash)...]
        if let query = database.firstIndex(of: "?") { database = database[..<query] }
        guard !database.isEmpty else { throw invalid("missing database name after /") }
        var host: Substring
        var port = 5432
        if hostPort.hasPrefix("[") {
          guard let close = hostPort.firstIndex(of: "]") else { throw invalid("missing ']' after the IPv6 address") }
          host = hostPort[hostPort.index(after: hostPort.startIndex) ..< close]
          let after = hostPort[hostPort.index(after: close)...]
          if !after.isEmpty {
            guard after.hasPrefix(":"), let number = Int(after.dropFirst()), (1 ... 65535).contains(number) else {
              throw invalid("'\(after.dropFirst())' is not a port number (1-65535)")
            }
            port = number
          }
        } else if let colon = hostPort.lastIndex(of: ":") {
          host = hostPort[..<colon]
          let portText = hostPort[hostPort.index(after: colon)...]
          guard let number = Int(portText), (1 ... 65535).contains(number) else {
            throw invalid("'\(portText)' is not a port number (1-65535)")
          }
          port = number
        } else {
          host = hostPort
        }
        guard !host.isEmpty else { throw invalid("missing host") }
        self.init(user: String(user), password: password, host: String(host), port: port, name: String(database))
      }

      /// The URL without its password.
      public var description: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "postgresql://\(self.user)\(self.password == nil ? "" : ":***")@\(host):\(self.port)/\(self.name)"
      }

      /// `text` with its password, if any, replaced by `***` — also when `text` is not a
      /// valid URL: everything after the first `:` of the part that may hold credentials (up to
      /// the last `@`, or to the end when there is none) is hidden.
      package static func redacted(_ text: String) -> String {
        let start = text.firstRange(of: "://")?.upperBound ?? text.startIndex
        let end = text.lastIndex(of: "@") ?? text.endIndex
        guard start <= end, let colon = text[start ..< end].firstIndex(of: ":") else { return text }
        return String(text[...colon]) + "***" + String(text[end...])
      }

      /// Whether `text` carries a password (visible to every local user in `ps`).
      package static func carriesPassword(_ text: String) -> Bool {
        Self.redacted(text) != text
      }
    }
  }
}
