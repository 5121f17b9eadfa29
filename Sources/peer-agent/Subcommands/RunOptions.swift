public import ArgumentParser
import Foundation
import PeerAgent

/// The options of `peer-agent run`, and their mapping to ``Peer/Config`` (in one place).
struct RunOptions: ParsableArguments {
  @Option(name: .long, help: "This peer's name: its identity, and with --certs the NAME in DIR/NAME.pem.")
  var name: String

  @Option(
    name: .long,
    help: ArgumentHelp(
      "single: one side listens, the other dials. dual: both listen and both dial.",
      valueName: "single|dual"
    )
  )
  var mode: Mode

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Listen here (port 0: any free port; the bound address is reported).",
      valueName: "HOST:PORT"
    )
  )
  var listen: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Dial this remote peer (repeatable). With NAME@, its certificate must carry NAME.",
      valueName: "[NAME@]HOST:PORT"
    )
  )
  var connect: [String] = []

  @Option(name: .long, help: ArgumentHelp("Take ca.pem, NAME.pem and NAME-key.pem from DIR.", valueName: "DIR"))
  var certs: String?

  @Option(name: .long, help: ArgumentHelp("The CA certificate (PEM) trusted for peers.", valueName: "FILE"))
  var ca: String?

  @Option(name: .long, help: ArgumentHelp("This peer's certificate (PEM).", valueName: "FILE"))
  var cert: String?

  @Option(name: .long, help: ArgumentHelp("This peer's private key (PEM).", valueName: "FILE"))
  var key: String?

  @Flag(name: .long, help: "Plaintext, no TLS: nothing is verified and links are named by address.")
  var insecure = false

  @Option(
    name: .long,
    help: ArgumentHelp("How long a request waits for a link and its reply.", valueName: "SECONDS")
  )
  var requestTimeout: Double = 30

  @Option(
    name: .long,
    help: ArgumentHelp("After SIGINT/SIGTERM, how long requests in flight may take.", valueName: "SECONDS")
  )
  var shutdownGrace: Double = 5

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
    guard self.requestTimeout > 0, self.shutdownGrace >= 0 else {
      throw ValidationError("--request-timeout must be positive and --shutdown-grace not negative")
    }
  }

  /// The peer configuration these options describe.
  func makeConfig() throws -> Peer.Config {
    let listen = try self.listen.map { try PeerAddress(parsing: $0) }
    let connect = try self.connect.map { try Peer.Target(parsing: $0) }
    return Peer.Config.defaults(mode: self.mode) { config in
      config.name = self.name
      config.listen = listen
      config.connect = connect
      config.requests.timeout = .milliseconds(Int64(self.requestTimeout * 1000))
      config.shutdown.gracePeriod = .milliseconds(Int64(self.shutdownGrace * 1000))
      if self.insecure {
        config.security = .plaintext
      } else if let dir = self.certs {
        let path = { (file: String) in (dir as NSString).appendingPathComponent(file) }
        config.security = .mutualTLS(
          trustRoots: .file(path("ca.pem")),
          certificateChain: .file(path("\(self.name).pem")),
          privateKey: .file(path("\(self.name)-key.pem"))
        )
      } else if let ca = self.ca, let cert = self.cert, let key = self.key {
        config.security = .mutualTLS(trustRoots: .file(ca), certificateChain: .file(cert), privateKey: .file(key))
      }
    }
  }
}

extension Mode: ExpressibleByArgument {}
