internal import ArgumentParser
internal import PeerAgent

/// The groups of `peer-agent run`'s options, each a titled section of `run --help`; `RunOptions`
/// holds them and maps them to `Peer.Config`.

/// What every peer is given: first in `run --help`.
struct EssentialRunOptions: ParsableArguments {
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
      "Dial this remote peer (repeatable). With NAME@, its certificate must carry NAME. A list of hubs of one cluster, NAME@HOST:PORT,NAME@HOST:PORT,…, is one link: to the first hub it reaches, then the next when that one fails or drains; its requests follow it.",
      valueName: "[NAME@]HOST:PORT[,NAME@HOST:PORT…]"
    )
  )
  var connect: [String] = []

  @Option(name: .long, help: ArgumentHelp("Take ca.pem, NAME.pem and NAME-key.pem from DIR.", valueName: "DIR"))
  var certs: String?
}

/// `run`'s security options: a group of their own in `run --help`.
struct SecurityRunOptions: ParsableArguments {
  @Option(name: .long, help: ArgumentHelp("The CA certificate (PEM) trusted for peers.", valueName: "FILE"))
  var ca: String?

  @Option(name: .long, help: ArgumentHelp("This peer's certificate (PEM).", valueName: "FILE"))
  var cert: String?

  @Option(name: .long, help: ArgumentHelp("This peer's private key (PEM).", valueName: "FILE"))
  var key: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Serve and dial only these peers: NAME or NAME=sha256:KEY (the SHA-256 of its public key, as `peer-agent certs --fingerprint` prints it), comma-separated; repeatable. @FILE reads entries from FILE. Re-read on SIGHUP.",
      valueName: "NAMES"
    )
  )
  var allow: [String] = []

  @Option(
    name: .long,
    help: ArgumentHelp("The allowlist from FILE (entries as --allow, one or more per line, # comments); re-read on SIGHUP and when it changes.", valueName: "FILE")
  )
  var allowFile: String?

  @Option(
    name: .long,
    help: ArgumentHelp("Refuse the certificates a revocation list of the CA revokes (PEM or DER, e.g. from `peer-agent certs --revoke`); re-read on SIGHUP and when it changes.", valueName: "FILE")
  )
  var revoked: String?

  @Option(
    name: .long,
    help: ArgumentHelp("Warn when this peer's certificate expires within DAYS (at start, on reload, and daily).", valueName: "DAYS")
  )
  var expiryWarning: Double = 14

  @Flag(
    name: .long,
    help: "Plaintext, no TLS: nothing is verified and links are named by address. Listens on loopback only."
  )
  var insecure = false

  @Flag(
    name: .long,
    help: "With --insecure, allow --listen on an address other than loopback: plaintext reachable from the network."
  )
  var insecureAnyAddress = false
}

/// `run`'s delivery options: a group of their own in `run --help`.
struct DeliveryRunOptions: ParsableArguments {
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

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Keep unanswered requests and recent replies in DIR (SQLite), so a restart resends what it owed and handles nothing twice. Default: $XDG_STATE_HOME/peer-agent/NAME (~/.local/state/peer-agent/NAME).",
      valueName: "DIR"
    )
  )
  var stateDir: String?

  @Flag(name: .long, help: "Keep unanswered requests and recent replies in memory only: a restart loses them.")
  var inMemory = false

  @Option(
    name: .long,
    help: ArgumentHelp("The most unanswered requests per remote peer; beyond it, reading input waits.", valueName: "N")
  )
  var maxInFlight: Int = 1024

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The largest gRPC message, encoded, sent or accepted (both directions); a longer line fails at once.",
      valueName: "BYTES"
    )
  )
  var maxMessageBytes: Int = 4 * 1024 * 1024

  @Option(
    name: .long,
    help: ArgumentHelp(
      "at-least-once: a crash between handling and recording the reply handles the resent request again. at-most-once: acceptance is recorded first; such a request is answered outcomeUnknown, never handled twice.",
      valueName: "at-least-once|at-most-once"
    )
  )
  var handling: RunOptions.HandlingOption = .atLeastOnce
}

/// `run`'s cluster options: a group of their own in `run --help`.
struct ClusterRunOptions: ParsableArguments {
  @Option(
    name: .long,
    help: ArgumentHelp(
      "Run as one hub of a cluster whose hubs share this PostgreSQL database: who is connected where (leases), the outbox and the de-duplication window. Any hub can send to an agent connected to any other; agents fail over with --connect hub-1@A,hub-2@B. Needs --mode single --listen; replaces --state-dir. The schema is created on first use. The password comes from PGPASSWORD or --cluster-password-file (one in the URL is visible to every local user in ps). TLS: ?sslmode=verify-full&sslrootcert=CA.pem (also require, verify-ca; sslmode=disable for plaintext, which is refused to a database not on loopback unless written out).",
      valueName: "postgresql://USER@HOST:PORT/DB"
    )
  )
  var cluster: String?

  @Option(
    name: .long,
    help: ArgumentHelp("With --cluster: read the database password from this file (its first line), e.g. a mounted secret.", valueName: "FILE")
  )
  var clusterPasswordFile: String?

  @Option(
    name: .long,
    help: ArgumentHelp("With --cluster: how long an agent's lease lasts unless renewed; a hub that dies loses its agents to other hubs within it.", valueName: "SECONDS")
  )
  var leaseDuration: Double = 6
}

/// `run`'s reconnection and link health options: a group of their own in `run --help`.
struct HealthRunOptions: ParsableArguments {
  @Option(name: .long, help: ArgumentHelp("First wait before redialing.", valueName: "SECONDS"))
  var backoffInitial: Double = 0.1

  @Option(name: .long, help: ArgumentHelp("Longest wait between redials.", valueName: "SECONDS"))
  var backoffMax: Double = 5

  @Option(
    name: .long,
    help: ArgumentHelp("Each wait is shortened at random by up to this fraction (0-1), so dialers spread out.", valueName: "FRACTION")
  )
  var backoffJitter: Double = 0.5

  @Option(
    name: .long,
    help: ArgumentHelp("Heartbeat on every long-lived stream this often; 0 turns heartbeats off.", valueName: "SECONDS")
  )
  var heartbeat: Double = 2

  @Option(
    name: .long,
    help: ArgumentHelp("Close a link silent this long (it is 'degraded' after two heartbeats).", valueName: "SECONDS")
  )
  var heartbeatTimeout: Double = 6

  @Option(
    name: .long,
    help: ArgumentHelp("HTTP/2 keepalive ping interval (listeners accept twice this rate); 0 turns pings off.", valueName: "SECONDS")
  )
  var keepalive: Double = 10
}
