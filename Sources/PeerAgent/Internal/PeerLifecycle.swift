private import Synchronization

/// Where a ``Peer`` is in its life — idle, running, draining, finished — and the commands its
/// supervisor obeys (dial a target, shut down, stop on a failure).
final class PeerLifecycle: Sendable {
  /// What the supervisor is told to do.
  enum Command: Sendable {
    /// Add a dialer.
    case dial(Peer.Target)
    /// Shut down gracefully.
    case shutdown
    /// Stop now: the listener failed.
    case failed
  }

  private enum Phase {
    case idle
    case running
    case draining
    case finished
  }

  /// The commands, in order; finished with the peer.
  let commands: AsyncStream<Command>
  /// The listener's bound address, once it is; failed if the peer stops first.
  let listeningAddress = Promise<PeerAddress>()
  private let continuation: AsyncStream<Command>.Continuation
  private let phase = Mutex(Phase.idle)

  init() {
    (self.commands, self.continuation) = AsyncStream.makeStream()
  }

  /// Starts the peer's only run.
  ///
  /// - Throws: ``PeerAgentError`` (`alreadyRunning`) if it ran already.
  func start() throws {
    try self.phase.withLock { phase in
      guard case .idle = phase else {
        throw PeerAgentError(code: .alreadyRunning, message: "a peer runs once")
      }
      phase = .running
    }
  }

  /// Whether the peer accepts new requests (it is not stopping or stopped).
  var acceptsRequests: Bool {
    self.phase.withLock { phase in
      switch phase {
      case .idle, .running: return true
      case .draining, .finished: return false
      }
    }
  }

  /// Gives the supervisor a command.
  func send(_ command: Command) {
    self.continuation.yield(command)
  }

  /// The peer stops taking requests and starts to shut down.
  func beginDraining() {
    self.phase.withLock { $0 = .draining }
  }

  /// The peer has stopped: nothing waits for its listener any longer.
  func finish() {
    self.phase.withLock { $0 = .finished }
    self.listeningAddress.complete(
      .failure(PeerAgentError(code: .notRunning, message: "the peer stopped before listening"))
    )
    self.continuation.finish()
  }
}
