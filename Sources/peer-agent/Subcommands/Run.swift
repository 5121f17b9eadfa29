public import ArgumentParser
private import Foundation
internal import Logging
internal import PeerAgent
internal import PeerAgentCluster
internal import ServiceLifecycle
internal import UnixSignals
internal import NIOCore
private import Synchronization
internal import Tracing

struct Run: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run one peer: listen and/or dial, send each line of standard input, answer requests.",
    discussion: """
      Examples (single-channel: the hub listens, the edge dials; `peer-agent certs --out certs \
      --names hub,edge` makes the certificates):
        peer-agent run --name hub --mode single --listen 127.0.0.1:7000 --certs certs
        peer-agent run --name edge --mode single --certs certs \\
          --connect hub@127.0.0.1:7000
      Dual-channel: both get --mode dual, --listen and --connect.

      Each line on standard input is a request: "@name text" to that peer (queued until it \
      connects), plain text to every connected peer. Its reply is printed with the round-trip \
      time; each request received is printed with the sender's verified name and answered \
      (acknowledged, or by --exec). --output json: one JSON object per event on standard \
      output.

      Nothing accepted is lost: a request is kept (on disk, --state-dir) until its reply, \
      across reconnects and restarts; a repeat is answered from the receiver's record. \
      SIGINT/SIGTERM drain (a second one stops at once); SIGHUP re-reads the certificates. \
      The guides in docs/ say the rest (operating, delivery, security, cluster, limits).
      """
  )

  @OptionGroup var options: RunOptions

  @Option(name: .long, help: ArgumentHelp("text (for people) or json (one object per line).", valueName: "text|json"))
  var output: ConsoleOutput.Format = .text

  @Flag(name: .long, help: "At end of input, wait for all replies, then exit (0 only if none failed).")
  var exitOnEof = false

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Log level on standard error. Default: warning with --output text (the event lines say the rest; a log line that repeats one is left out), info with --output json.",
      valueName: "trace|debug|info|notice|warning|error"
    )
  )
  var logLevel: Logger.Level?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Answer each request with a program: CMD runs under /bin/sh -c with the request's text on its standard input and PEER_AGENT_FROM, PEER_AGENT_ID, PEER_AGENT_VERIFIED and PEER_AGENT_LINK set; its standard output, trimmed, is the reply. A non-zero exit or a timeout is an error reply. Without it, each request is acknowledged.",
      valueName: "CMD"
    )
  )
  var exec: String?

  @Option(name: .long, help: ArgumentHelp("Kill an --exec program that runs longer, and answer with an error.", valueName: "SECONDS"))
  var execTimeout: Double = 30

  @Option(name: .long, help: ArgumentHelp("The most --exec programs running at once; other requests wait their turn.", valueName: "N"))
  var execConcurrency: Int = 8

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Serve Prometheus metrics at http://HOST:PORT/metrics, the peer's links and outbox as JSON at /status (see `peer-agent status`), and /healthz. Plain HTTP: bind it to loopback or a private address. Port 0 picks one (reported in the `metrics` event).",
      valueName: "HOST:PORT"
    )
  )
  var metrics: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Export a span for every request sent and every request handled to an OpenTelemetry collector over OTLP/gRPC (e.g. http://127.0.0.1:4317). The trace context travels inside each request, so one trace crosses both peers; log lines carry trace_id. Off without it.",
      valueName: "URL"
    )
  )
  var otlpEndpoint: String?

  func validate() throws {
    if let exec = self.exec, exec.trimmingCharacters(in: .whitespaces).isEmpty {
      throw ValidationError("--exec needs a command")
    }
    guard self.execTimeout > 0, self.execTimeout.isFinite else {
      throw ValidationError("--exec-timeout must be a number of seconds above 0 (got \(self.execTimeout))")
    }
    guard self.execConcurrency >= 1 else {
      throw ValidationError("--exec-concurrency must be at least 1 (got \(self.execConcurrency))")
    }
    if let metrics = self.metrics {
      do { _ = try PeerAddress(parsing: metrics) } catch let error as PeerAgentError {
        throw ValidationError("--metrics: \(error.message)")
      }
    }
    if let endpoint = self.otlpEndpoint, let problem = TraceExport.validate(endpoint) {
      throw ValidationError(problem)
    }
  }

  func run() async throws {
    let text = self.output == .text
    let level = self.logLevel ?? (text ? .warning : .info)
    // With traces, every log line written inside a span carries its trace_id and span_id.
    let metadataProvider = self.otlpEndpoint.map { _ in TraceExport.metadataProvider }
    LoggingSystem.bootstrap(
      { label, provider in
        EscapingLogHandler.standardError(label: label, level: level, dropsEventMirrors: text, metadataProvider: provider)
      },
      metadataProvider: metadataProvider
    )
    let logger = Logger(label: "peer-agent")
    // A reader of standard output that goes away must not stop the peer: EPIPE, not SIGPIPE.
    signal(SIGPIPE, SIG_IGN)
    // Every connection takes a descriptor: take all the system allows.
    if let (before, after) = OpenFiles.raiseSoftLimit(), after != before {
      logger.notice("raised the open-files limit", metadata: ["from": "\(before)", "to": "\(after)"])
    }
    let console = ConsoleOutput(format: self.output)
    var config = try self.options.makeConfig()
    let exposition = self.metrics.map { _ in PrometheusExposition() }
    if let exposition {
      config.observability.metricsFactory = exposition.factory
    }
    let traceExport = try self.otlpEndpoint.map {
      try TraceExport.make(endpoint: $0, peerName: config.name ?? self.options.name, logger: logger)
    }
    config.observability.tracer = traceExport?.tracer

    if let cluster = self.options.cluster, Peer.Config.Cluster.Database.carriesPassword(cluster) {
      console.note(
        "WARNING: the password in --cluster is visible to every user of this machine (ps): give it in PGPASSWORD or --cluster-password-file instead."
      )
    }
    if let metrics = self.metrics, let address = try? PeerAddress(parsing: metrics), !address.isLoopback {
      console.note(
        "WARNING: --metrics \(metrics) serves /metrics and /status without authentication beyond this machine: bind it to 127.0.0.1, or keep the port behind a firewall."
      )
    }
    if self.options.insecure {
      console.note(
        "WARNING: --insecure: plaintext, no TLS. Nothing is encrypted or verified; links are named by their address."
      )
    }
    // A peer that dials its own name: most likely a copy of the listener's command line.
    for target in config.connect where target.endpoints.contains(where: { $0.expectedIdentity == self.options.name }) {
      console.note(
        "WARNING: --name \(self.options.name) dials \(target.queueName), its own name: the two peers need different names (and certificates); give this one its own --name"
      )
    }

    let name = self.options.name
    let exec = self.exec.map {
      ExecHandler(
        command: $0,
        timeout: .fromSeconds(self.execTimeout),
        concurrency: self.execConcurrency,
        maximumOutputBytes: config.transport.maximumMessageBytes / 2,
        logger: logger
      )
    }
    let handler: Peer.Handler = { request in
      console.request(request)
      if let exec { return try await exec.reply(to: request) }
      return "ack from \(name): \(request.text)"
    }
    let serving = Serving(
      console: console,
      logger: logger,
      exposition: exposition,
      traceExport: traceExport,
      metrics: self.metrics,
      exitOnEOF: self.exitOnEof
    )
    // What --exec programs left running in the background does not outlive the peer.
    defer { exec?.killLeftovers() }
    if config.cluster != nil {
      let console = serving.console
      try await PeerCluster.run(config: config, logger: logger, events: { console.cluster($0, selfName: name) }, handler: handler) { peer in
        try await serving.serve(peer)
      }
    } else {
      try await serving.serve(try Peer(config: config, logger: logger, handler: handler))
    }
  }
}

/// What `run` does with its peer once it is made: report, serve the metrics, send the lines
/// of standard input, until the peer stops.
struct Serving: Sendable {
  let console: ConsoleOutput
  let logger: Logger
  let exposition: PrometheusExposition?
  let traceExport: (tracer: any Tracer, service: any Service)?
  let metrics: String?
  let exitOnEOF: Bool

  func serve(_ peer: Peer) async throws {
    let console = self.console
    let logger = self.logger
    let exposition = self.exposition
    let traceExport = self.traceExport
    // Reported before the peer starts, so that they come before any event of this run: a
    // script can tell which of its lines a crash left accepted.
    for delivery in peer.recoveredDeliveries {
      console.resumed(delivery)
    }
    // Bound before the peer starts: a port in use fails the command at once.
    let metricsChannel: (any Channel)?
    if let exposition, let metrics = self.metrics {
      let routes = MetricsEndpoint.Routes(
        metrics: { exposition.render() },
        status: { StatusView.json(peer.status) }
      )
      let channel = try await MetricsEndpoint(address: try PeerAddress(parsing: metrics), routes: routes).bind()
      metricsChannel = channel
      console.metrics(at: channel.localAddress.map(MetricsEndpoint.format) ?? metrics, selfName: peer.name)
    } else {
      metricsChannel = nil
    }
    let failures = FailureCount()
    let exitOnEOF = self.exitOnEOF
    enum Finished { case peer, events, input, signals, stopNow, metrics }

    try await withThrowingTaskGroup(of: Finished.self) { group in
      group.addTask {
        let services = ServiceGroup(
          configuration: .init(
            // The exporter first: it stops last, and sends the peer's last spans.
            services: (traceExport.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0.service)] } ?? [])
              + [.init(service: peer, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
          )
        )
        try await services.run()
        return .peer
      }
      if let metricsChannel {
        group.addTask {
          await withTaskCancellationHandler {
            try? await metricsChannel.closeFuture.get()
          } onCancel: {
            metricsChannel.close(promise: nil)
          }
          return .metrics
        }
      }
      group.addTask {
        // SIGHUP re-reads the certificate, key, CA, revocation list and allowlist; links stay.
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
          try? await peer.reloadSecurity()
        }
        return .signals
      }
      group.addTask {
        // Say what the first Ctrl-C waits for, and that a second one stops now.
        var signals = 0
        for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
          signals += 1
          let status = peer.status
          if signals == 1, status.outboxDepth + status.handling > 0 {
            let grace = Int(peer.config.shutdown.gracePeriod.seconds.rounded(.up))
            console.note(
              "shutting down: waiting up to \(grace) s for \(ConsoleOutput.count(status.outboxDepth, "unanswered request")) and "
                + "\(status.handling) being handled (Ctrl-C again to stop now)"
            )
          } else if signals == 2 {
            // The second one stops at once (ServiceGroup takes one set of signals for draining
            // and another for cancelling, never the same): everything is cancelled.
            console.note("stopping now: \(ConsoleOutput.count(status.outboxDepth, "request")) left without a reply")
            return .stopNow
          }
        }
        return .signals
      }
      group.addTask {
        for await event in peer.events {
          console.report(event, selfName: peer.name)
        }
        return .events
      }
      group.addTask {
        await Run.sendLines(
          StandardInputLines.make(),
          resuming: peer.recoveredDeliveries,
          through: peer,
          console: console,
          failures: failures
        )
        if exitOnEOF {
          peer.beginGracefulShutdown()
        }
        return .input
      }
      while let finished = try await group.next() {
        if finished == .peer || finished == .stopNow {
          group.cancelAll()
        }
      }
    }

    console.statistics(
      peer.deliveryStatistics, selfName: peer.name, durable: peer.config.delivery.storage.isDurable || peer.config.cluster != nil
    )

    if exitOnEOF, failures.value > 0 {
      throw CommandFailure(message: "\(failures.value) request(s) failed")
    }
  }
}

extension ConsoleOutput.Format: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}

/// How many requests failed, counted from many tasks.
final class FailureCount: Sendable {
  private let count = Atomic<Int>(0)
  var value: Int { self.count.load(ordering: .relaxed) }
  func increment() { self.count.add(1, ordering: .relaxed) }
}
