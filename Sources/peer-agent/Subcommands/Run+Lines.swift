internal import PeerAgent
private import Synchronization

/// What `peer-agent run` does with its input lines: each becomes a request, reported `queued`
/// in order once recorded, then its reply.
extension Run {
  /// Sends each line as a request (several in flight at once), reports it `queued` once it is
  /// in the outbox, and reports each reply; also waits for the replies to `resuming`, the
  /// requests a previous run left unanswered (reported `resumed` before the peer started).
  /// Returns when every request has its reply or failed. Reading waits while a remote's
  /// window of unanswered requests is full.
  ///
  /// A plain line (no `@name`) goes to every connected peer; with none connected, a dialer
  /// queues it for the one peer it dials, and a listener refuses it at once (a line for a
  /// peer by name is queued until that peer connects).
  static func sendLines(
    _ lines: AsyncStream<String>,
    resuming recovered: [Delivery],
    through peer: Peer,
    console: ConsoleOutput,
    failures: FailureCount
  ) async {
    await withDiscardingTaskGroup { group in
      for delivery in recovered {
        group.addTask { await Self.report(delivery, console: console, failures: failures) }
      }
      // Lines are accepted in a row (a durable store records them together) and reported
      // `queued` in their order, once recorded, by one task that then waits for each reply.
      let (accepted, acceptance) = AsyncStream.makeStream(of: Accepted.self)
      // Lines handed to that task and not yet reported: while none is, a line recorded at once
      // (a store in memory) is reported here, without the hand-over.
      let unreported = Unreported()
      group.addTask {
        await Self.acknowledge(accepted, through: peer, console: console, failures: failures, unreported: unreported)
      }
      defer { acceptance.finish() }
      for await line in lines {
        let (target, text) = Self.parse(line)
        if text.isEmpty { continue }
        let recipients: [String?]
        if let target {
          recipients = [target]
        } else {
          let connected = peer.connectedPeers.map(\.name)
          if connected.isEmpty, let refusal = Self.refusalWithoutPeers(peer.config) {
            failures.increment()
            console.failure(peer: "", text: text, error: refusal)
            continue
          }
          recipients = connected.count > 1 ? connected : [nil]
        }
        for recipient in recipients {
          do {
            let pending = try await peer.enqueue(text, to: recipient)
            if recipient == nil, unreported.count.load(ordering: .acquiring) == 0, let delivery = pending.delivery {
              console.queued(delivery)
              group.addTask { await Self.report(delivery, console: console, failures: failures) }
              continue
            }
            unreported.count.add(1, ordering: .releasing)
            acceptance.yield(Accepted(pending: pending, recipient: recipient, text: text))
          } catch {
            failures.increment()
            console.failure(peer: recipient ?? "", text: text, error: error)
          }
        }
      }
    }
  }

  /// How many accepted lines the acknowledging task has not reported yet.
  fileprivate final class Unreported: Sendable {
    let count = Atomic<Int>(0)
  }

  /// A line accepted and being recorded.
  struct Accepted: Sendable {
    var pending: PendingDelivery
    var recipient: String?
    var text: String
  }

  /// Reports each accepted line `queued` once it is recorded, in order, then its reply.
  private static func acknowledge(
    _ accepted: AsyncStream<Accepted>,
    through peer: Peer,
    console: ConsoleOutput,
    failures: FailureCount,
    unreported: Unreported
  ) async {
    await withDiscardingTaskGroup { group in
      var noticed: [String: ContinuousClock.Instant] = [:]
      for await line in accepted {
        defer { unreported.count.subtract(1, ordering: .releasing) }
        do {
          let delivery = try await line.pending.recorded()
          console.queued(delivery)
          // A hub of a cluster delivers through whichever hub holds the agent: "not connected
          // here" says nothing there.
          if let recipient = line.recipient, peer.config.cluster == nil {
            let connected = peer.connectedPeers.map(\.name).sorted()
            // Said once per name every 5 s: a script's burst of lines for a peer not yet up
            // gets one notice, not one per line.
            let now = ContinuousClock.now
            if !connected.contains(recipient), noticed[recipient].map({ now - $0 > .seconds(5) }) ?? true {
              noticed[recipient] = now
              console.waiting(delivery, connected: connected, timeout: peer.config.requests.timeout)
            }
          }
          group.addTask { await Self.report(delivery, console: console, failures: failures) }
        } catch {
          failures.increment()
          console.failure(peer: line.recipient ?? "", text: line.text, error: error)
        }
      }
    }
  }

  /// Why a plain line cannot be queued while no peer is connected, if it cannot: a peer that
  /// dials exactly one remote queues it for that one.
  static func refusalWithoutPeers(_ config: Peer.Config) -> PeerAgentError? {
    if config.cluster != nil {
      return PeerAgentError(
        code: .notConnected,
        message: "no agent is connected to this hub, so a line without a name has nowhere to go; agents on the other hubs of the cluster are reached by name: @NAME text"
      )
    }
    switch config.connect.count {
    case 1:
      return nil
    case 0:
      return PeerAgentError(
        code: .notConnected,
        message: "no peer is connected, so a line without a name has nowhere to go; to queue it for a peer until it connects, name it: @NAME text"
      )
    default:
      return PeerAgentError(
        code: .notConnected,
        message: "no peer is connected yet, and this peer dials several: name one (@NAME text) to queue the line for it"
      )
    }
  }

  private static func report(_ delivery: Delivery, console: ConsoleOutput, failures: FailureCount) async {
    // Reported first, forgotten after: a crash in between reports it again after a restart,
    // rather than never.
    await delivery.reply { outcome in
      switch outcome {
      case .success(let reply):
        console.reply(reply, to: delivery.text, traceContext: delivery.traceContext)
      case .failure(is CancellationError):
        // This peer stops before the reply: not a failure of the request, which stays in the
        // outbox (on disk, sent again at the next start); the `stats` line counts it.
        break
      case .failure(let error):
        failures.increment()
        console.failure(peer: delivery.peer, id: delivery.id, text: delivery.text, error: error)
      }
    }
  }

  /// `@name text` → (`name`, `text`); anything else → (`nil`, line).
  static func parse(_ line: String) -> (String?, String) {
    guard line.hasPrefix("@"), let space = line.firstIndex(of: " ") else {
      return (nil, line)
    }
    let name = String(line[line.index(after: line.startIndex) ..< space])
    let text = String(line[line.index(after: space)...])
    return (name.isEmpty ? nil : name, text)
  }
}
