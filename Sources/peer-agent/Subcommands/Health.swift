internal import ArgumentParser
internal import Logging
internal import PeerAgent

/// `peer-agent health`: the standard gRPC health check of a running peer, for systemd and
/// container probes that have no Python or grpc_health_probe.
struct Health: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Ask a running peer whether it serves (the standard gRPC health check), over mutual TLS.",
    discussion: """
      Connects to HOST:PORT as a peer would — with the certificate of --name from --certs (or \
      --ca, --cert and --key), checking the listener's certificate against the CA and, with \
      NAME@HOST:PORT, its name — and calls grpc.health.v1.Health/Check. Prints SERVING and \
      exits 0 while the peer serves; prints NOT_SERVING (a peer draining), SERVICE_UNKNOWN or \
      why there was no answer, and exits 1 otherwise.

      Examples:
        peer-agent health hub@127.0.0.1:7000 --certs certs --name edge
        peer-agent health 10.0.0.5:7000 --ca ca.pem --cert probe.pem --key probe-key.pem --timeout 2
      """
  )

  @Argument(help: ArgumentHelp("The peer to ask; with NAME@, its certificate must carry NAME.", valueName: "[NAME@]HOST:PORT"))
  var target: String

  @Option(name: .long, help: ArgumentHelp("The name whose certificate this probe presents (NAME.pem in --certs).", valueName: "NAME"))
  var name: String?

  @Option(name: .long, help: ArgumentHelp("Take ca.pem, NAME.pem and NAME-key.pem from DIR.", valueName: "DIR"))
  var certs: String?

  @Option(name: .long, help: ArgumentHelp("The CA certificate (PEM), with --cert and --key.", valueName: "FILE"))
  var ca: String?

  @Option(name: .long, help: ArgumentHelp("This probe's certificate (PEM).", valueName: "FILE"))
  var cert: String?

  @Option(name: .long, help: ArgumentHelp("This probe's private key (PEM).", valueName: "FILE"))
  var key: String?

  @Flag(name: .long, help: "Plaintext, for a peer started with --insecure.")
  var insecure = false

  @Option(name: .long, help: ArgumentHelp("The service to ask about: \"\" (the whole peer, the default) or Contact.", valueName: "NAME"))
  var service = ""

  @Option(name: .long, help: ArgumentHelp("Give up after this long.", valueName: "SECONDS"))
  var timeout: Double = 5

  func validate() throws {
    do { _ = try Peer.Target(parsing: self.target) } catch let error as PeerAgentError {
      throw ValidationError("\(self.target): \(error.message)")
    }
    guard self.timeout > 0, self.timeout <= 3600 else {
      throw ValidationError("--timeout must be a number of seconds above 0, at most 3600 (got \(self.timeout))")
    }
    if self.insecure {
      guard self.certs == nil, self.ca == nil, self.cert == nil, self.key == nil else {
        throw ValidationError("--insecure turns TLS off: drop --certs/--ca/--cert/--key, or drop --insecure")
      }
    } else if self.certs != nil {
      guard self.name != nil else {
        throw ValidationError("--certs needs --name: which certificate of the folder this probe presents (e.g. --name edge)")
      }
    } else if self.ca == nil || self.cert == nil || self.key == nil {
      throw ValidationError("mutual TLS needs --certs DIR with --name, or all of --ca, --cert and --key; --insecure for plaintext")
    }
  }

  func run() async throws {
    LoggingSystem.bootstrap { label in EscapingLogHandler.standardError(label: label, level: .error) }
    let target = try Peer.Target(parsing: self.target)
    let peer = try Peer(
      config: .defaults(mode: .single) { config in
        config.name = self.name ?? "health-probe"
        if self.insecure {
          config.security = .plaintext
        } else if let certs = self.certs, let name = self.name {
          config.security = .mutualTLS(directory: certs, name: name)
        } else if let ca = self.ca, let cert = self.cert, let key = self.key {
          config.security = .mutualTLS(trustRoots: .file(ca), certificateChain: .file(cert), privateKey: .file(key))
        }
      }
    ) { _ in "" }
    let status: Peer.HealthStatus
    do {
      status = try await peer.checkHealth(of: target, service: self.service, timeout: .fromSeconds(self.timeout))
    } catch let error as PeerAgentError {
      throw CommandFailure(message: error.message)
    }
    StandardStream.output.write(status.rawValue + "\n")
    if status != .serving { throw CommandFailure(message: "\(target) is \(status.rawValue)", exitCode: 1) }
  }
}
