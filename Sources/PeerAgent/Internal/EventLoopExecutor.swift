package import NIOCore
package import NIOPosix
private import Synchronization

/// A `TaskExecutor` that runs every job on one event loop.
///
/// A stream's code given this executor as its preference (`withTaskExecutorPreference`) runs on
/// the thread that reads and writes the stream's connection: a message read wakes its reader
/// without a hop to Swift's concurrency pool, and a reply written is on the loop already.
/// Round-trip latency is mostly those hops (see DESIGN's known pitfalls), so this is what makes
/// a lone request fast. Only per-message code belongs here: anything that blocks the loop holds
/// up every connection on it.
package final class EventLoopExecutor: TaskExecutor {
  package let eventLoop: any EventLoop

  init(eventLoop: any EventLoop) {
    self.eventLoop = eventLoop
  }

  package func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    self.eventLoop.execute {
      job.runSynchronously(on: self.asUnownedTaskExecutor())
    }
  }
}

/// The event loops a peer's connections run on, each with its executor: a connection's
/// streams, and the handlers of its requests, run on that connection's loop.
///
/// Like NIO's own singletons, a group lives as long as the process: every peer of the process
/// with the same number of loops shares it (``shared(loops:)``).
package final class EventLoops: Sendable {
  package let group: MultiThreadedEventLoopGroup
  package let executors: [EventLoopExecutor]
  private let byLoop: [ObjectIdentifier: EventLoopExecutor]
  private let turn = Atomic<Int>(0)

  private init(loops: Int) {
    self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, loops))
    self.executors = self.group.makeIterator().map { EventLoopExecutor(eventLoop: $0) }
    self.byLoop = Dictionary(uniqueKeysWithValues: self.executors.map { (ObjectIdentifier($0.eventLoop), $0) })
  }

  /// The executor of `loop` (one of this group's).
  package func executor(of loop: any EventLoop) -> EventLoopExecutor {
    self.byLoop[ObjectIdentifier(loop)] ?? self.executors[0]
  }

  /// The loops in turn: where the next dialer's connection goes.
  package func next() -> EventLoopExecutor {
    self.executors[self.turn.wrappingAdd(1, ordering: .relaxed).oldValue % self.executors.count]
  }

  private static let groups = Mutex<[Int: EventLoops]>([:])

  /// The process's group of `loops` event loops.
  package static func shared(loops: Int) -> EventLoops {
    self.groups.withLock { groups in
      let loops = max(1, loops)
      if let existing = groups[loops] { return existing }
      let made = EventLoops(loops: loops)
      groups[loops] = made
      return made
    }
  }
}

/// Which event loop each of a listener's connections runs on, by the remote address gRPC gives
/// its requests (`ServerContext.remotePeer`): a handler moves to its connection's loop.
final class ConnectionLoops: Sendable {
  private let loops: EventLoops
  private let byRemote = Mutex<[String: EventLoopExecutor]>([:])
  /// The loop of the connection accepted last (``Peer/taskExecutor`` for a listener).
  private let latest = Mutex<EventLoopExecutor?>(nil)

  init(loops: EventLoops) {
    self.loops = loops
  }

  /// Records `channel`'s loop until it closes. On the channel's loop.
  func register(_ channel: any Channel) {
    guard let remote = channel.remoteAddress.map(Self.describe) else { return }
    let executor = self.loops.executor(of: channel.eventLoop)
    self.byRemote.withLock { $0[remote] = executor }
    self.latest.withLock { $0 = executor }
    channel.closeFuture.whenComplete { _ in
      _ = self.byRemote.withLock { $0.removeValue(forKey: remote) }
    }
  }

  /// The executor of the connection gRPC calls `remotePeer`, else the group's first.
  func executor(forRemote remotePeer: String) -> EventLoopExecutor {
    self.byRemote.withLock { $0[remotePeer] } ?? self.loops.executors[0]
  }

  var latestExecutor: EventLoopExecutor? { self.latest.withLock { $0 } }

  /// `address` as grpc-swift-nio-transport writes it into `ServerContext.remotePeer`.
  static func describe(_ address: SocketAddress) -> String {
    switch address {
    case .v4(let ipv4): "ipv4:\(ipv4.host):\(address.port ?? 0)"
    case .v6(let ipv6): "ipv6:[\(ipv6.host)]:\(address.port ?? 0)"
    case .unixDomainSocket: "unix:\(address.pathname ?? "")"
    }
  }
}
