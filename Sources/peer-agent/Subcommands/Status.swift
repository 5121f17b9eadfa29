internal import ArgumentParser
internal import NIOCore
internal import PeerAgent

struct Status: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show a running peer's links and outbox, from its --metrics endpoint.",
    discussion: """
      Reads http://HOST:PORT/status from a `peer-agent run --metrics HOST:PORT` and prints \
      the peer's name, mode and version, how many of its requests have no reply yet, and one \
      row per remote peer: its link's state (connecting, ready, degraded, down), the link's \
      kind (sendStatus: this peer dialed; getTask: the remote dialed in single-channel mode) \
      and its unanswered requests. Exits 1 when the endpoint cannot be read.
      """
  )

  @Option(name: .long, help: ArgumentHelp("The --metrics address of the running peer.", valueName: "HOST:PORT"))
  var metrics: String

  @Flag(name: .long, help: "Print the JSON the peer served, as it is.")
  var json = false

  @Option(name: .long, help: ArgumentHelp("Give up after this long.", valueName: "SECONDS"))
  var timeout: Double = 5

  func validate() throws {
    do { _ = try PeerAddress(parsing: self.metrics) } catch let error as PeerAgentError {
      throw ValidationError("--metrics: \(error.message)")
    }
    guard self.timeout > 0, self.timeout.isFinite else {
      throw ValidationError("--timeout must be a number of seconds above 0 (got \(self.timeout))")
    }
  }

  func run() async throws {
    let address = try PeerAddress(parsing: self.metrics)
    let answer: (status: UInt, body: [UInt8])
    do {
      answer = try await HTTPGet.fetch(
        host: address.host,
        port: address.port,
        path: "/status",
        timeout: .nanoseconds(Int64(min(self.timeout, 3600) * 1e9))
      )
    } catch {
      let reason = "\(error)".contains("Connection refused") ? "connection refused" : "\(error)"
      throw CommandFailure(
        message: "cannot read http://\(address)/status (\(reason)): is `peer-agent run --metrics \(address)` running?"
      )
    }
    guard answer.status == 200 else {
      throw CommandFailure(message: "http://\(address)/status answered HTTP \(answer.status): is that a peer-agent --metrics address?")
    }
    let status: PeerStatus
    do {
      status = try StatusView.decode(answer.body)
    } catch {
      throw CommandFailure(message: "http://\(address)/status did not answer with a peer's status: \(error)")
    }
    if self.json {
      StandardStream.output.write(String(decoding: StatusView.json(status), as: UTF8.self))
    } else {
      StandardStream.output.write(StatusView.table(status) + "\n")
    }
  }
}
