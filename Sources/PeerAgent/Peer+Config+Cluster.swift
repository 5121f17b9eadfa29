private import Foundation

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

    /// A PostgreSQL database, as in
    /// `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE&sslrootcert=FILE]`.
    public struct Database: Sendable, Hashable, CustomStringConvertible {
      public var user: String
      public var password: String?
      public var host: String
      public var port: Int
      public var name: String
      /// How the connection is encrypted and the server verified (PostgreSQL's `sslmode`);
      /// `nil`: in plaintext to a database on loopback, refused to any other
      /// (``checkTransport()``).
      public var sslMode: SSLMode?
      /// The CA certificates (PEM) the server's certificate must chain to, for
      /// ``SSLMode/verifyCA`` and ``SSLMode/verifyFull`` (PostgreSQL's `sslrootcert`).
      public var sslRootCertificate: String?

      public init(
        user: String, password: String? = nil, host: String, port: Int = 5432, name: String,
        sslMode: SSLMode? = nil, sslRootCertificate: String? = nil
      ) {
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.name = name
        self.sslMode = sslMode
        self.sslRootCertificate = sslRootCertificate
      }

      /// PostgreSQL's `sslmode`, the ones that never fall back to plaintext in silence
      /// (`allow` and `prefer` do, and are refused).
      public enum SSLMode: String, Sendable, Hashable, CaseIterable {
        /// Plaintext: every request and reply crosses the network readable.
        case disable
        /// Encrypted; the server's certificate is not checked (a man in the middle can read it).
        case require
        /// Encrypted; the server's certificate must chain to `sslrootcert`.
        case verifyCA = "verify-ca"
        /// Encrypted; the server's certificate must chain to `sslrootcert` and be for the host
        /// dialed (its DNS name, or its IP address).
        case verifyFull = "verify-full"
      }

      /// Whether the host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
      public var isLoopback: Bool {
        PeerAddress(host: self.host, port: self.port).isLoopback
      }

      /// Refuses what would send the cluster's traffic readable across a network without the
      /// operator having written it out: no `sslmode` for a database that is not on loopback.
      ///
      /// - Throws: ``PeerAgentError`` (`invalidConfiguration`) saying what to write.
      public func checkTransport() throws {
        guard self.sslMode == nil, !self.isLoopback else { return }
        throw PeerAgentError(
          code: .invalidConfiguration,
          message: "the cluster database \(self) is not on this machine, and its connection would be plaintext: add "
            + "sslmode=verify-full&sslrootcert=CA.pem to the URL (or sslmode=disable to send requests and replies unencrypted)"
        )
      }

      /// Parses `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `postgres://`); an
      /// IPv6 host in brackets; the query parameters `sslmode` (`disable`, `require`,
      /// `verify-ca`, `verify-full`) and `sslrootcert` (a file of PEM certificates, needed by
      /// the two `verify-` modes).
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
        var parameters: [String: String] = [:]
        if let query = database.firstIndex(of: "?") {
          for pair in database[database.index(after: query)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            let value = parts.count == 2 ? String(parts[1]).removingPercentEncoding ?? String(parts[1]) : ""
            guard ["sslmode", "sslrootcert"].contains(key) else {
              throw invalid("unknown parameter '\(key.logSafe)' (known: sslmode, sslrootcert)")
            }
            guard parameters.updateValue(value, forKey: key) == nil else { throw invalid("'\(key)' given twice") }
          }
          database = database[..<query]
        }
        guard !database.isEmpty else { throw invalid("missing database name after /") }
        var sslMode: SSLMode?
        if let mode = parameters["sslmode"] {
          guard let known = SSLMode(rawValue: mode) else {
            let hint = ["allow", "prefer"].contains(mode) ? ": it falls back to plaintext in silence; write require or verify-full" : ""
            throw invalid(
              "sslmode '\(mode.logSafe)' is not supported\(hint) (known: \(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
          }
          sslMode = known
        }
        let rootCertificate = parameters["sslrootcert"]
        if let rootCertificate, rootCertificate.isEmpty { throw invalid("sslrootcert is empty: give the CA's PEM file") }
        if sslMode == .verifyCA || sslMode == .verifyFull, rootCertificate == nil {
          throw invalid("sslmode=\(sslMode!.rawValue) needs sslrootcert=FILE, the CA the server's certificate chains to")
        }
        if sslMode == .disable, rootCertificate != nil {
          throw invalid("sslrootcert with sslmode=disable: the connection would not use it")
        }
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
        self.init(
          user: String(user), password: password, host: String(host), port: port, name: String(database),
          // As libpq: a root certificate given with `require` verifies the chain.
          sslMode: sslMode == .require && rootCertificate != nil ? .verifyCA : sslMode,
          sslRootCertificate: rootCertificate
        )
      }

      /// The URL without its password.
      public var description: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        let mode = self.sslMode.map { "?sslmode=\($0.rawValue)" } ?? ""
        return "postgresql://\(self.user)\(self.password == nil ? "" : ":***")@\(host):\(self.port)/\(self.name)\(mode)"
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
