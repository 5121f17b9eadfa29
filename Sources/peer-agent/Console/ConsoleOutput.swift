private import Foundation
internal import PeerAgent
internal import PeerAgentCluster
private import Synchronization

/// Where `peer-agent run` reports events: one JSON object a line on standard output
/// (`--output json`), or lines for people (`--output text`). Warnings and logs go to standard
/// error either way.
final class ConsoleOutput: Sendable {
  enum Format: String, CaseIterable, Sendable {
    case text
    case json
  }

  /// One line of `--output json`. Fields that do not apply are left out.
  struct Line: Encodable, Sendable {
    var event: String
    /// A peer's name: this peer's for its own events (listening, stats), else the remote's;
    /// absent when the remote is known only by its address.
    var peer: String?
    var address: String?
    var link: String?
    var verified: Bool?
    var id: String?
    var text: String?
    var reply: String?
    var rttMs: Double?
    var message: String?
    var reason: String?
    var state: String?
    var unanswered: Int?
    var resent: Int?
    var repeats: Int?
    var connected: [String]?
    /// For a failover list of hubs (`peer` is the list): the hub reached.
    var hub: String?
    /// `cluster` events: the database, and the hubs alive.
    var database: String?
    var hubs: [String]?
    /// The request's trace, with --otlp-endpoint.
    var traceID: String?

    enum CodingKeys: String, CodingKey {
      case event, peer, hub, database, hubs, address, link, verified, id, text, reply
      case rttMs = "rtt_ms"
      case message, reason, state, unanswered, resent, repeats, connected
      case traceID = "trace_id"
    }

    init(event: String, peer: String?) {
      self.event = event
      self.peer = peer.flatMap { $0.isEmpty ? nil : $0 }
    }
  }

  let format: Format
  private let lock = Mutex(())
  /// The last link state printed per remote (text mode prints only the changes people need).
  private let states = Mutex<[String: LinkState]>([:])
  private let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
  }()

  init(format: Format) {
    self.format = format
  }

  func emit(_ line: Line, human: @autoclosure () -> String) {
    let text: String
    switch self.format {
    case .json:
      guard let data = try? self.encoder.encode(line), let json = String(data: data, encoding: .utf8)
      else { return }
      text = json
    case .text:
      // One event, one line: a remote's text or a certificate's name cannot start another.
      text = human().logSafe
    }
    self.lock.withLock { _ in
      StandardStream.output.write(text + "\n")
    }
  }

  /// A note for people: standard error in both formats.
  func note(_ text: String) {
    self.lock.withLock { _ in
      StandardStream.error.write(text + "\n")
    }
  }

  // MARK: - Events

  func report(_ event: PeerEvent, selfName: String) {
    switch event {
    case .listening(let address):
      var line = Line(event: "listening", peer: selfName)
      line.address = "\(address)"
      self.emit(line, human: "listening on \(address)")
    case .connected(let peer, let link):
      var line = Line(event: "connected", peer: peer.name)
      line.hub = peer.hub
      line.link = link.rawValue
      line.verified = peer.isVerified
      let how = peer.isVerified ? "verified by mutual TLS" : "UNVERIFIED: plaintext, named by address"
      self.emit(line, human: "connected to \(Self.naming(peer)) over \(link) (\(how))")
    case .disconnected(let peer, let link, let reason):
      var line = Line(event: "disconnected", peer: peer.name)
      line.hub = peer.hub
      line.link = link.rawValue
      line.reason = reason
      self.emit(line, human: "disconnected from \(Self.naming(peer)) (\(link)): \(reason)")
    case .refused(let remote, let reason):
      let (name, address) = Self.split(remote)
      var line = Line(event: "error", peer: name)
      line.address = address
      line.message = "connection refused: \(reason)"
      line.reason = "refused"
      self.emit(line, human: "refused: \(remote): \(reason)")
    case .unreachable(let target, let reason):
      let (name, address) = Self.split(target)
      var line = Line(event: "retrying", peer: name)
      line.address = address
      line.reason = reason
      line.message = "cannot reach \(target) yet (\(reason)); retrying with backoff"
      self.emit(line, human: "cannot reach \(target) yet: \(reason); retrying")
    case .linkState(let peer, let state, let reason):
      var line = Line(event: "link", peer: peer)
      line.state = state.rawValue
      line.reason = reason
      // A remote that is down is forgotten: plaintext remotes, named by address, come and go.
      let previous = self.states.withLock { states in
        state == .down ? states.removeValue(forKey: peer) : states.updateValue(state, forKey: peer)
      }
      // In text mode `connected` and `disconnected` already say ready and down, and a dialer's
      // `connecting` is no news: only a degraded link, and its recovery, get a line.
      if self.format == .text, !(state == .degraded || (state == .ready && previous == .degraded)) { return }
      let human = state == .ready ? "link to \(peer): ready again" : "link to \(peer): \(state)" + (reason.map { " (\($0))" } ?? "")
      self.emit(line, human: human)
    case .modeMismatch(let peer, _, _, let message):
      var line = Line(event: "error", peer: peer)
      line.reason = "modeMismatch"
      line.message = message
      self.emit(line, human: "mode mismatch: \(message)")
    }
  }

  /// A remote as events name it: `name@address` → (`name`, `address`); an address → (`nil`,
  /// `address`); anything else is a name.
  static func split(_ remote: String) -> (peer: String?, address: String?) {
    if let at = remote.lastIndex(of: "@") {
      return (String(remote[..<at]), String(remote[remote.index(after: at)...]))
    }
    if (try? PeerAddress(parsing: remote)) != nil { return (nil, remote) }
    return (remote, nil)
  }

  /// The `--metrics` endpoint is serving.
  func metrics(at address: String, selfName: String) {
    var line = Line(event: "metrics", peer: selfName)
    line.address = address
    self.emit(line, human: "metrics on http://\(address)/metrics, status on http://\(address)/status")
  }

  /// A request from standard input is in the outbox (on disk, when durable): the peer now
  /// owes its reply.
  func queued(_ delivery: Delivery) {
    var line = Line(event: "queued", peer: delivery.peer)
    line.id = delivery.id
    line.text = delivery.text
    line.traceID = TraceExport.traceID(in: delivery.traceContext)
    self.emit(line, human: "queued for \(delivery.peer): \(delivery.text)")
  }

  /// A request queued for a peer that is not connected now: it waits for it until its deadline,
  /// and who is connected is said at once.
  func waiting(_ delivery: Delivery, connected: [String], timeout: Duration) {
    var line = Line(event: "waiting", peer: delivery.peer)
    line.id = delivery.id
    line.connected = connected
    let who = connected.isEmpty ? "no peer is connected" : "connected now: \(connected.joined(separator: ", "))"
    line.message = "'\(delivery.peer)' is not connected (\(who)); the request waits for it for up to \(Int(timeout.seconds)) s"
    self.emit(line, human: line.message!)
  }

  /// A request a previous run left unanswered is being sent again.
  func resumed(_ delivery: Delivery) {
    var line = Line(event: "resumed", peer: delivery.peer)
    line.id = delivery.id
    line.text = delivery.text
    self.emit(line, human: "resuming for \(delivery.peer): \(delivery.text)")
  }

  /// The delivery counters, when the peer stops: always a `stats` event in JSON; in text a
  /// line only when there is something to say, in words.
  func statistics(_ statistics: DeliveryStatistics, selfName: String, durable: Bool) {
    var line = Line(event: "stats", peer: selfName)
    line.unanswered = statistics.unanswered
    line.resent = statistics.resent
    line.repeats = statistics.repeatsAnswered
    var said: [String] = []
    if statistics.unanswered > 0 {
      let kept = durable ? "kept in the state folder: sent again at the next start" : "lost: this peer kept them in memory"
      said.append("\(Self.count(statistics.unanswered, "request")) still without a reply (\(kept))")
    }
    if statistics.resent > 0 {
      said.append("\(Self.count(statistics.resent, "request")) sent again after a reconnect or a restart")
    }
    if statistics.repeatsAnswered > 0 {
      said.append("\(Self.count(statistics.repeatsAnswered, "repeated request")) answered from the de-duplication window, without running the handler again")
    }
    if self.format == .text && said.isEmpty { return }
    self.emit(line, human: "stopped: " + said.joined(separator: "; "))
  }

  /// `1 request`, `2 requests`.
  static func count(_ number: Int, _ noun: String) -> String {
    "\(number) \(noun)\(number == 1 ? "" : "s")"
  }

  func request(_ request: IncomingRequest) {
    var line = Line(event: "request", peer: request.from.name)
    line.id = request.id
    line.text = request.text
    line.link = request.link.rawValue
    line.traceID = TraceExport.traceID(in: request.traceContext)
    self.emit(line, human: "<- \(request.from): \(request.text)")
  }

  /// What happens to a hub's link to its cluster database: `cluster` events, with `state`
  /// `joined`, `unreachable` or `reachable`.
  func cluster(_ event: PeerCluster.Event, selfName: String) {
    var line = Line(event: "cluster", peer: selfName)
    switch event {
    case .joined(let database, let hubs):
      line.state = "joined"
      line.database = database
      line.hubs = hubs
      self.emit(line, human: "cluster \(database): hubs alive \(hubs.joined(separator: ", "))")
    case .databaseUnreachable(let reason):
      line.state = "unreachable"
      line.reason = reason
      line.message = "the cluster database is unreachable (\(reason)): requests this hub accepts fail until it answers again; requests across hubs wait"
      self.emit(line, human: line.message!)
    case .databaseReachable(let after):
      line.state = "reachable"
      line.message = "the cluster database answers again, after \(Int(after.seconds.rounded())) s"
      self.emit(line, human: line.message!)
    }
  }

  /// A remote as a line names it: a failover list with the hub its link reached.
  static func naming(_ peer: PeerIdentity) -> String {
    peer.hub.map { "\(peer.name) (at \($0))" } ?? peer.name
  }

  func reply(_ reply: Reply, to text: String, traceContext: [String: String] = [:]) {
    var line = Line(event: "reply", peer: reply.from.name)
    line.hub = reply.from.hub
    line.id = reply.id
    line.text = text
    line.traceID = TraceExport.traceID(in: traceContext)
    line.reply = reply.text
    line.rttMs = Self.milliseconds(reply.roundTrip)
    self.emit(
      line,
      human: "-> \(reply.from): \(text)  <= \(reply.text)  (\(String(format: "%.2f", line.rttMs!)) ms)"
    )
  }

  /// A request that failed: `error`, with the request's text cut to 80 characters, the
  /// message, and the reason (the ``PeerAgentError/Code`` name, when there is one).
  func failure(peer: String, id: String? = nil, text: String?, error: any Error) {
    var line = Line(event: "error", peer: peer)
    line.id = id
    line.text = text.map { String($0.prefix(80)) }
    let peerError = error as? PeerAgentError
    line.message = peerError?.message ?? "\(error)"
    line.reason = peerError.map { "\($0.code)" }
    self.emit(line, human: peer.isEmpty ? "error: \(line.message!)" : "error: \(peer): \(line.message!)")
  }

  static func milliseconds(_ duration: Duration) -> Double {
    duration.fractionalMilliseconds.rounded(toPlaces: 3)
  }
}

extension Double {
  func rounded(toPlaces places: Int) -> Double {
    let factor = Foundation.pow(10.0, Double(places))
    return (self * factor).rounded() / factor
  }
}
