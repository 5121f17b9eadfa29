public import ArgumentParser
private import Foundation
internal import PeerAgent

/// The options of `peer-agent run`, and their mapping to ``Peer/Config`` (in one place).
struct RunOptions: ParsableArguments {
  @OptionGroup(title: "Essentials") var essentials: EssentialRunOptions

  var name: String { self.essentials.name }
  var mode: Mode { self.essentials.mode }
  var listen: String? { self.essentials.listen }
  var connect: [String] { self.essentials.connect }
  var certs: String? { self.essentials.certs }

  @OptionGroup(title: "Security") var security: SecurityRunOptions
  @OptionGroup(title: "Delivery") var delivery: DeliveryRunOptions
  @OptionGroup(title: "Cluster") var clusterOptions: ClusterRunOptions
  @OptionGroup(title: "Reconnection and link health") var linkHealth: HealthRunOptions
  var ca: String? { self.security.ca }
  var cert: String? { self.security.cert }
  var key: String? { self.security.key }
  var allow: [String] { self.security.allow }
  var allowFile: String? { self.security.allowFile }
  var revoked: String? { self.security.revoked }
  var expiryWarning: Double { self.security.expiryWarning }
  var insecure: Bool { self.security.insecure }
  var insecureAnyAddress: Bool { self.security.insecureAnyAddress }
  var requestTimeout: Double { self.delivery.requestTimeout }
  var shutdownGrace: Double { self.delivery.shutdownGrace }
  var stateDir: String? { self.delivery.stateDir }
  var inMemory: Bool { self.delivery.inMemory }
  var maxInFlight: Int { self.delivery.maxInFlight }
  var maxMessageBytes: Int { self.delivery.maxMessageBytes }
  var handling: RunOptions.HandlingOption { self.delivery.handling }
  var cluster: String? { self.clusterOptions.cluster }
  var clusterPasswordFile: String? { self.clusterOptions.clusterPasswordFile }
  var leaseDuration: Double { self.clusterOptions.leaseDuration }
  var backoffInitial: Double { self.linkHealth.backoffInitial }
  var backoffMax: Double { self.linkHealth.backoffMax }
  var backoffJitter: Double { self.linkHealth.backoffJitter }
  var heartbeat: Double { self.linkHealth.heartbeat }
  var heartbeatTimeout: Double { self.linkHealth.heartbeatTimeout }
  var keepalive: Double { self.linkHealth.keepalive }

  @OptionGroup(title: "Limits") var limits: LimitOptions

  enum HandlingOption: String, ExpressibleByArgument, CaseIterable {
    case atLeastOnce = "at-least-once"
    case atMostOnce = "at-most-once"
  }

  /// Whether `host` is a loopback address or `localhost`.
  static func isLoopback(_ host: String) -> Bool {
    if host == "localhost" || host == "::1" { return true }
    let parts = host.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts.first == "127" && parts.allSatisfy { UInt8($0) != nil }
  }

  func validate() throws {
    guard DevelopmentCertificates.isValidName(self.name) else {
      throw ValidationError("--name '\(self.name)' is not a usable peer name: use letters, digits, '-' and '.'")
    }
    if let listen = self.listen {
      do { _ = try PeerAddress(parsing: listen) } catch let error as PeerAgentError {
        throw ValidationError("--listen: \(error.message)")
      }
    }
    for target in self.connect {
      do { _ = try Peer.Target(parsing: target) } catch let error as PeerAgentError {
        throw ValidationError("--connect: \(error.message)")
      }
    }
    switch self.mode {
    case .single:
      if self.listen == nil && self.connect.isEmpty {
        throw ValidationError("single mode needs --listen (the listening side) or --connect (the dialing side)")
      }
    case .dual:
      if self.listen == nil || self.connect.isEmpty {
        throw ValidationError("dual mode needs both --listen and --connect: each peer listens and dials the other")
      }
    }
    if self.insecureAnyAddress && !self.insecure {
      throw ValidationError("--insecure-any-address goes with --insecure only: with TLS any address may be listened on")
    }
    if self.insecure, !self.insecureAnyAddress, let listen = self.listen,
      let address = try? PeerAddress(parsing: listen), !Self.isLoopback(address.host)
    {
      throw ValidationError(
        "--insecure listens on loopback only (127.0.0.1, ::1, localhost), not on '\(address.host)': nothing would be encrypted or verified on the network; add --insecure-any-address to listen there anyway"
      )
    }
    let explicit = [self.ca, self.cert, self.key].compactMap { $0 }
    if self.insecure {
      if self.certs != nil || !explicit.isEmpty {
        throw ValidationError("--insecure turns TLS off: drop --certs/--ca/--cert/--key, or drop --insecure")
      }
    } else if self.certs != nil {
      if !explicit.isEmpty {
        throw ValidationError("give either --certs DIR or --ca, --cert and --key, not both")
      }
    } else if explicit.count != 3 {
      throw ValidationError(
        "mutual TLS needs --certs DIR, or all of --ca, --cert and --key (make them with `peer-agent certs`); --insecure for plaintext"
      )
    }
    let authorization = !self.allow.isEmpty || self.allowFile != nil || self.revoked != nil
    if self.insecure, authorization {
      throw ValidationError("--allow, --allow-file and --revoked check certificates: they need mutual TLS, not --insecure")
    }
    if !self.allow.isEmpty, self.allowFile != nil {
      throw ValidationError("give the allowlist either with --allow or with --allow-file, not both")
    }
    if self.allow.contains(where: { $0.hasPrefix("@") }), self.allow.count > 1 {
      throw ValidationError("--allow @FILE reads the whole allowlist from FILE: give it once, without other --allow")
    }
    if !self.allow.isEmpty, !self.allow.contains(where: { $0.hasPrefix("@") }) {
      do {
        _ = try Allowlist(parsing: self.allow.joined(separator: ","))
      } catch {
        throw ValidationError("--allow: \(error)")
      }
    }
    guard self.expiryWarning >= 0, self.expiryWarning <= 36_500 else {
      throw ValidationError("--expiry-warning is a number of days from 0 to 36500")
    }
    guard self.requestTimeout > 0, self.shutdownGrace >= 0 else {
      throw ValidationError("--request-timeout must be positive and --shutdown-grace not negative")
    }
    // Before anything is created (the state folder among them): a typo'd name is named, with
    // the names the folder does hold.
    if let dir = self.certs, !self.insecure, FileManager.default.fileExists(atPath: dir) {
      let folder = CertificateDirectory(dir)
      if !FileManager.default.fileExists(atPath: folder.certificate(for: self.name)) {
        let found = folder.names
        let holds = found.isEmpty ? "it holds no peer's certificate and key" : "it holds \(found.joined(separator: ", "))"
        throw ValidationError(
          "--certs \(dir) has no certificate for '\(self.name)' (\(folder.certificate(for: self.name))): \(holds). Check --name, or make one: peer-agent certs --out \(dir) --names \(self.name)"
        )
      }
    }
    if self.inMemory && self.stateDir != nil {
      throw ValidationError("--in-memory keeps nothing on disk: drop --state-dir, or drop --in-memory")
    }
    if let cluster = self.cluster {
      do { try Peer.Config.Cluster.Database(parsing: cluster).checkTransport() } catch let error as PeerAgentError {
        throw ValidationError("--cluster: \(error.message)")
      }
      if self.inMemory || self.stateDir != nil {
        throw ValidationError("--cluster keeps the outbox and window in the cluster database: drop --state-dir and --in-memory")
      }
      if self.mode != .single || self.listen == nil {
        throw ValidationError("--cluster is for hubs: they listen in single-channel mode (--mode single --listen HOST:PORT), and their agents dial them")
      }
    }
    if let file = self.clusterPasswordFile {
      guard self.cluster != nil else { throw ValidationError("--cluster-password-file goes with --cluster") }
      guard FileManager.default.isReadableFile(atPath: file) else {
        throw ValidationError("--cluster-password-file: cannot read \(file)")
      }
    }
    guard self.leaseDuration >= 1, self.leaseDuration <= 3600 else {
      throw ValidationError("--lease-duration is a number of seconds from 1 to 3600")
    }
    guard self.maxMessageBytes >= 64 else {
      throw ValidationError("--max-message-bytes must be at least 64")
    }
    guard self.maxInFlight >= 1 else {
      throw ValidationError("--max-in-flight must be at least 1")
    }
    guard self.backoffInitial > 0, self.backoffMax >= self.backoffInitial else {
      throw ValidationError("--backoff-initial must be positive and not above --backoff-max")
    }
    guard (0 ... 1).contains(self.backoffJitter) else {
      throw ValidationError("--backoff-jitter is a fraction between 0 and 1")
    }
    guard self.heartbeat >= 0, self.keepalive >= 0 else {
      throw ValidationError("--heartbeat and --keepalive must not be negative (0 turns them off)")
    }
    guard self.heartbeat == 0 || self.heartbeatTimeout > self.heartbeat * 2 else {
      throw ValidationError("--heartbeat-timeout must be more than two --heartbeat intervals")
    }
  }

  /// Where the peer keeps its state: `--state-dir`, else the default per peer name.
  var stateDirectory: String {
    if let dir = self.stateDir { return dir }
    let environment = ProcessInfo.processInfo.environment
    let base = environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
      ?? (NSHomeDirectory() as NSString).appendingPathComponent(".local/state")
    return ((base as NSString).appendingPathComponent("peer-agent") as NSString).appendingPathComponent(self.name)
  }

  /// `--allow`, `--allow-file` and `--revoked`.
  var authorization: Peer.Config.Authorization {
    var authorization = Peer.Config.Authorization()
    if let file = self.allowFile {
      authorization.allowlist = .file(file)
    } else if let file = self.allow.first(where: { $0.hasPrefix("@") }) {
      authorization.allowlist = .file(String(file.dropFirst()))
    } else if !self.allow.isEmpty, let allowlist = try? Allowlist(parsing: self.allow.joined(separator: ",")) {
      authorization.allowlist = .entries(allowlist)
    }
    authorization.revocationList = self.revoked.map { .file($0) }
    return authorization
  }

  /// The peer configuration these options describe.
  func makeConfig() throws -> Peer.Config {
    let listen = try self.listen.map { try PeerAddress(parsing: $0) }
    let connect = try self.connect.map { try Peer.Target(parsing: $0) }
    return Peer.Config.defaults(mode: self.mode) { config in
      config.name = self.name
      config.listen = listen
      config.connect = connect
      config.requests.timeout = .fromSeconds(self.requestTimeout)
      config.shutdown.gracePeriod = .fromSeconds(self.shutdownGrace)
      config.delivery.storage = self.inMemory ? .inMemory : .sqlite(directory: self.stateDirectory)
      config.delivery.maximumInFlight = self.maxInFlight
      config.delivery.handling = self.handling == .atMostOnce ? .atMostOnce : .atLeastOnce
      config.transport.maximumMessageBytes = self.maxMessageBytes
      config.reconnect.initialBackoff = .fromSeconds(self.backoffInitial)
      config.reconnect.maximumBackoff = .fromSeconds(self.backoffMax)
      config.reconnect.jitter = self.backoffJitter
      config.health.heartbeatInterval = self.heartbeat > 0 ? .fromSeconds(self.heartbeat) : nil
      config.health.heartbeatTimeout = .fromSeconds(self.heartbeatTimeout)
      config.health.keepaliveInterval = self.keepalive > 0 ? .fromSeconds(self.keepalive) : nil
      self.limits.apply(to: &config)
      if let cluster = self.cluster, var database = try? Peer.Config.Cluster.Database(parsing: cluster) {
        if let file = self.clusterPasswordFile, let text = try? String(contentsOfFile: file, encoding: .utf8) {
          database.password = String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        } else if database.password == nil, let password = ProcessInfo.processInfo.environment["PGPASSWORD"], !password.isEmpty {
          database.password = password
        }
        config.cluster = Peer.Config.Cluster(database: database, leaseDuration: .fromSeconds(self.leaseDuration))
      }
      if self.insecure {
        config.security = .plaintext
      } else if let dir = self.certs {
        config.security = .mutualTLS(directory: dir, name: self.name)
      } else if let ca = self.ca, let cert = self.cert, let key = self.key {
        config.security = .mutualTLS(trustRoots: .file(ca), certificateChain: .file(cert), privateKey: .file(key))
      }
      config.security.updateMutualTLS { tls in
        tls.authorization = self.authorization
        tls.expiryWarning = .fromSeconds(self.expiryWarning * 86_400)
      }
    }
  }
}

extension Mode: ExpressibleByArgument {}
