internal import GRPCNIOTransportCore

/// A host and port: where a peer listens or what it dials.
///
/// Written `HOST:PORT`; an IPv6 host goes in brackets, `[::1]:7000`. Port `0` when listening
/// means "any free port" (the bound address is reported once listening).
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
  /// A host name or an IP address (IPv6 without brackets).
  public var host: String
  /// The port, 0–65535.
  public var port: Int

  /// Creates an address.
  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  /// Parses `HOST:PORT` or `[IPV6]:PORT`.
  ///
  /// - Throws: ``PeerAgentError`` (`invalidConfiguration`) naming what is wrong.
  public init(parsing text: String) throws {
    let host: Substring
    let portText: Substring
    if text.hasPrefix("[") {
      guard let close = text.firstIndex(of: "]") else {
        throw Self.invalid(text, "missing ']' after the IPv6 address")
      }
      host = text[text.index(after: text.startIndex) ..< close]
      let rest = text[text.index(after: close)...]
      guard rest.hasPrefix(":") else { throw Self.invalid(text, "missing ':PORT'") }
      portText = rest.dropFirst()
    } else {
      guard let colon = text.lastIndex(of: ":") else {
        throw Self.invalid(text, "missing ':PORT'")
      }
      host = text[..<colon]
      portText = text[text.index(after: colon)...]
      if host.contains(":") {
        throw Self.invalid(text, "write an IPv6 address in brackets, like [::1]:7000")
      }
    }
    guard !host.isEmpty else { throw Self.invalid(text, "missing host") }
    guard let port = Int(portText), (0 ... 65535).contains(port) else {
      throw Self.invalid(text, "'\(portText)' is not a port number (0-65535)")
    }
    self.init(host: String(host), port: port)
  }

  /// Whether the host is an IPv6 address.
  public var isIPv6: Bool { self.host.contains(":") }

  /// Whether the host is a literal IPv4 address.
  public var isIPv4: Bool {
    let parts = self.host.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
  }

  /// Whether the host is a loopback address or name: `127.x.x.x`, `::1`, `localhost`.
  public var isLoopback: Bool {
    let host = self.host.lowercased()
    return host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" || (self.isIPv4 && host.hasPrefix("127."))
  }

  /// As written on the command line: `HOST:PORT` (an IPv6 host in brackets), or `NAME@HOST:PORT` for a pinned target.
  public var description: String {
    self.isIPv6 ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
  }

  private static func invalid(_ text: String, _ reason: String) -> PeerAgentError {
    PeerAgentError(
      code: .invalidConfiguration,
      message: "invalid address '\(text)': \(reason) (expected HOST:PORT, e.g. 127.0.0.1:7000)"
    )
  }
}

extension Peer {
  /// A remote peer to dial: its address and, optionally, the identity it must prove.
  ///
  /// Written `[NAME@]HOST:PORT`. With a name, the listener's verified certificate must carry
  /// it, or the connection is refused with a message naming both.
  public struct Target: Sendable, Hashable, CustomStringConvertible {
    /// Where to dial.
    public var address: PeerAddress
    /// The identity the listener must present, if pinned.
    public var expectedIdentity: String?
    /// Further hubs of the same cluster to fail over to, in order: the dialer keeps one link,
    /// to the first of ``endpoints`` it reaches, and moves on to the next when that link fails
    /// or its hub drains. Each is pinned (`NAME@HOST:PORT`). The hubs are one remote to this
    /// peer, named ``queueName`` (their names joined by commas): its requests, unanswered ones
    /// included, follow the link from hub to hub, and a reply from any of them answers them.
    public var failover: [Target]

    /// Creates a target.
    public init(address: PeerAddress, expectedIdentity: String? = nil, failover: [Target] = []) {
      self.address = address
      self.expectedIdentity = expectedIdentity
      self.failover = failover.flatMap(\.endpoints)
    }

    /// Parses `[NAME@]HOST:PORT`, or a failover list `NAME@HOST:PORT,NAME@HOST:PORT,…`.
    public init(parsing text: String) throws {
      if text.contains(",") {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var targets: [Target] = []
        for part in parts {
          guard !part.isEmpty else {
            throw PeerAgentError(
              code: .invalidConfiguration,
              message: "empty entry in the failover list '\(text)' (expected NAME@HOST:PORT,NAME@HOST:PORT)"
            )
          }
          let target = try Target(parsing: part)
          guard let name = target.expectedIdentity else {
            throw PeerAgentError(
              code: .invalidConfiguration,
              message: "'\(part)' in the failover list '\(text)' needs the hub's name: NAME@HOST:PORT"
            )
          }
          if targets.contains(where: { $0.expectedIdentity == name }) {
            throw PeerAgentError(
              code: .invalidConfiguration,
              message: "hub '\(name)' is listed twice in the failover list '\(text)'"
            )
          }
          targets.append(target)
        }
        self.init(address: targets[0].address, expectedIdentity: targets[0].expectedIdentity, failover: Array(targets.dropFirst()))
        return
      }
      if let at = text.firstIndex(of: "@") {
        let name = String(text[..<at])
        guard DevelopmentCertificates.isValidName(name) else {
          throw PeerAgentError(
            code: .invalidConfiguration,
            message: "invalid peer name '\(name)' in '\(text)' (expected NAME@HOST:PORT)"
          )
        }
        self.init(
          address: try PeerAddress(parsing: String(text[text.index(after: at)...])),
          expectedIdentity: name
        )
      } else {
        self.init(address: try PeerAddress(parsing: text))
      }
    }

    /// Every hub this target dials, in order: itself, then ``failover``.
    public var endpoints: [Target] {
      [Target(address: self.address, expectedIdentity: self.expectedIdentity)] + self.failover
    }

    /// Whether this target is a failover list of hubs.
    public var isFailoverList: Bool { !self.failover.isEmpty }

    /// As written on the command line: `HOST:PORT` (an IPv6 host in brackets), or `NAME@HOST:PORT` for a pinned target;
    /// a failover list joined by commas.
    public var description: String {
      if self.isFailoverList { return self.endpoints.map(\.description).joined(separator: ",") }
      if let name = self.expectedIdentity { return "\(name)@\(self.address)" }
      return self.address.description
    }

    /// The name requests to this target are addressed to before it connects: the pinned
    /// identity, else the address (which is the remote's name in plaintext; with TLS the
    /// requests move to the name in its certificate when it connects). For a failover list,
    /// the hubs' names joined by commas, whichever of them is connected.
    public var queueName: String {
      if self.isFailoverList { return self.endpoints.compactMap(\.expectedIdentity).joined(separator: ",") }
      return self.expectedIdentity ?? self.address.description
    }

    /// For a failover list, the name the link is known by when the hub `name` answers: the
    /// list's ``queueName``; `nil` when `name` is not one of its hubs, or this is one target.
    func groupName(for name: String) -> String? {
      guard self.isFailoverList, self.endpoints.contains(where: { $0.expectedIdentity == name }) else { return nil }
      return self.queueName
    }
  }
}


extension PeerAddress {
  /// The address a gRPC transport reports, if it is an IP address.
  init?(_ address: GRPCNIOTransportCore.SocketAddress) {
    if let ipv4 = address.ipv4 {
      self.init(host: ipv4.host, port: ipv4.port)
    } else if let ipv6 = address.ipv6 {
      self.init(host: ipv6.host, port: ipv6.port)
    } else {
      return nil
    }
  }

  /// This address for a gRPC transport to bind or dial.
  var socketAddress: GRPCNIOTransportCore.SocketAddress {
    if self.isIPv6 { return .ipv6(host: self.host, port: self.port) }
    if self.host == "localhost" { return .ipv4(host: "127.0.0.1", port: self.port) }
    return .ipv4(host: self.host, port: self.port)
  }
}
