internal import ArgumentParser
private import Foundation
internal import Logging
internal import PeerAgent

struct Demo: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "See two peers call each other both ways, in both modes, over mutual TLS.",
    discussion: """
      Makes development certificates in a temporary folder, starts two peers (hub and edge) \
      on free loopback ports in single-channel mode and then in dual-channel mode, sends \
      requests both ways in each, prints what happened and how long it took, and cleans up. \
      Needs nothing set up.
      """
  )

  @Option(name: .long, help: "Requests to send in each direction, in each mode.")
  var requests: Int = 3

  @Option(name: .long, help: ArgumentHelp("Log level on standard error.", valueName: "LEVEL"))
  var logLevel: Logger.Level = .warning

  func validate() throws {
    guard (1 ... 10_000).contains(self.requests) else {
      throw ValidationError("--requests must be between 1 and 10000")
    }
  }

  func run() async throws {
    let level = self.logLevel
    LoggingSystem.bootstrap { label in
      EscapingLogHandler.standardError(label: label, level: level)
    }
    let started = ContinuousClock.now
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("peer-agent-demo-\(UInt32.random(in: .min ... .max))").path
    defer { try? FileManager.default.removeItem(atPath: directory) }

    print("Making development certificates for hub and edge in \(directory)")
    try DevelopmentCertificates.write(names: ["hub", "edge"], to: directory)

    for mode in Mode.allCases {
      print("")
      print(mode == .single
        ? "== single-channel: hub listens, edge dials once (getTask + tellResult + sendStatus) =="
        : "== dual-channel: hub and edge both listen and dial each other (sendStatus both ways) ==")
      let modeStarted = ContinuousClock.now
      try await self.run(mode: mode, certificates: directory)
      print("   \(mode)-channel done in \(Self.format(.now - modeStarted))")
    }
    print("")
    print("Demo finished in \(Self.format(.now - started)). Next: the README's walk-through, `peer-agent run --help`.")
  }

  private func run(mode: Mode, certificates: String) async throws {
    let hub = try self.makePeer("hub", mode: mode, listen: true, certificates: certificates)
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await hub.run() }
      let hubAddress = try await hub.listeningAddress
      print("   hub listening on \(hubAddress) (mutual TLS)")

      let edge = try self.makePeer(
        "edge",
        mode: mode,
        listen: mode == .dual,
        connect: mode == .single ? [Peer.Target(address: hubAddress, expectedIdentity: "hub")] : [],
        certificates: certificates
      )
      group.addTask { try await edge.run() }
      if mode == .dual {
        let edgeAddress = try await edge.listeningAddress
        print("   edge listening on \(edgeAddress) (mutual TLS)")
        edge.dial(Peer.Target(address: hubAddress, expectedIdentity: "hub"))
        hub.dial(Peer.Target(address: edgeAddress, expectedIdentity: "edge"))
      } else {
        print("   edge dialing hub@\(hubAddress)")
      }

      for (sender, receiver, direction) in [(edge, "hub", "edge -> hub"), (hub, "edge", "hub -> edge")] {
        for n in 1 ... self.requests {
          let reply = try await sender.send("\(direction) #\(n)", to: receiver, timeout: .seconds(15))
          print("   \(direction): '\(reply.text)' in \(Self.format(reply.roundTrip))")
        }
      }
      hub.beginGracefulShutdown()
      edge.beginGracefulShutdown()
    }
  }

  private func makePeer(
    _ name: String,
    mode: Mode,
    listen: Bool,
    connect: [Peer.Target] = [],
    certificates: String
  ) throws -> Peer {
    let config = Peer.Config.defaults(mode: mode) { config in
      config.name = name
      config.listen = listen ? PeerAddress(host: "127.0.0.1", port: 0) : nil
      config.connect = connect
      config.security = .mutualTLS(directory: certificates, name: name)
    }
    return try Peer(config: config, logger: Logger(label: "peer-agent.demo")) { request in
      print("   \(name) received '\(request.text)' from \(request.from) (verified: \(request.from.isVerified), via \(request.link))")
      return "ack from \(name)"
    }
  }

  static func format(_ duration: Duration) -> String {
    let ms = ConsoleOutput.milliseconds(duration)
    return ms < 1000 ? String(format: "%.2f ms", ms) : String(format: "%.2f s", ms / 1000)
  }
}
