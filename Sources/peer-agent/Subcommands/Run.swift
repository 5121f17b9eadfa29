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
      Each line on standard input is sent to the remote peer and its reply is printed with the \
      round-trip time: "@name text" goes to that peer (queued until it connects), plain text \
      to every connected peer. With none connected, a peer that dials one remote queues plain \
      text for it; a listener refuses it at once. A line above --max-message-bytes fails at \
      once and is never sent. Each request received is printed with the sender's identity and \
      acknowledged.

      With --output json, standard output carries one JSON object per event (listening, \
      connected, disconnected, link, queued, resumed, waiting, request, reply, retrying, \
      metrics, error, stats), each with "event" and, where there is one, "peer" (a name); human \
      text and logs go to standard error. In text mode, one line per event, and logs at \
      warning unless --log-level says otherwise.

      Every request is kept until its reply arrives: across reconnects, and — with the \
      default on-disk state (--state-dir) — across restarts, when it is sent again and \
      reported as "resumed". A repeat is answered from the receiver's record; with \
      --handling at-most-once, a request accepted just before a crash is answered \
      "outcomeUnknown" rather than handled again.

      At the end of input the peer keeps serving until SIGINT or SIGTERM, unless \
      --exit-on-eof: then it waits for every reply and exits, 0 only if none failed.

      SIGHUP (and any change to the files) re-reads the certificate, key, CA, --revoked list \
      and --allow-file; new handshakes use them and links stay up. The peer refuses to start \
      when its certificate is for another name than --name, does not allow its roles, or its \
      key is readable by group or others.
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
      try await PeerCluster.run(config: config, logger: logger, handler: handler) { peer in
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
    enum Finished { case peer, events, input, signals, metrics }

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
        if finished == .peer {
          group.cancelAll()
        }
      }
    }

    console.statistics(peer.deliveryStatistics, selfName: peer.name)

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
