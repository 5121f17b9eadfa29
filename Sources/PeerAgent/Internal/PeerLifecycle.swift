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
  /// Callers of ``nextChange(after:)``, woken when the phase changes.
  private let watchers = Mutex(Watchers())

  private struct Watchers {
    var version = 0
    var waiting = WaiterQueue<Int>()
  }

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
    self.changed()
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
    self.changed()
  }

  /// The number of phase changes so far, for ``nextChange(after:)``.
  var version: Int { self.watchers.withLock { $0.version } }

  /// Waits until the phase changed after `version` (at once if it already has); returns the
  /// new version. Throws `CancellationError` if the task is cancelled while it waits.
  func nextChange(after version: Int) async throws -> Int {
    try await WaiterQueue<Int>.suspend { key, continuation in
      self.watchers.withLock { watchers in
        if watchers.version != version { return .success(watchers.version) }
        watchers.waiting.append(key, continuation)
        return nil
      }
    } onCancel: { key in
      self.watchers.withLock { $0.waiting.remove(key) }
    }
  }

  private func changed() {
    let (woken, version) = self.watchers.withLock { watchers in
      watchers.version += 1
      return (watchers.waiting.removeAll(), watchers.version)
    }
    for waiter in woken { waiter.resume(returning: version) }
  }

  /// The peer has stopped: nothing waits for its listener any longer.
  func finish() {
    self.phase.withLock { $0 = .finished }
    self.changed()
    self.listeningAddress.complete(
      .failure(PeerAgentError(code: .notRunning, message: "the peer stopped before listening"))
    )
    self.continuation.finish()
  }
}
