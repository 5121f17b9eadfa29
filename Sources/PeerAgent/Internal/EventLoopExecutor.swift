package import NIOCore
package import NIOPosix

/// A `TaskExecutor` that runs every job on the one event loop of its group.
///
/// A stream's code given this executor as its preference (`withTaskExecutorPreference`) runs on
/// the thread that reads and writes the stream's connection: a message read wakes its reader
/// without a hop to Swift's concurrency pool, and a reply written is on the loop already.
/// Round-trip latency is mostly those hops (see DESIGN's known pitfalls), so this is what makes
/// a lone request fast. Only per-message code belongs here: anything that blocks the loop holds
/// up every connection on it.
package final class EventLoopExecutor: TaskExecutor {
  /// The group the transports run their connections on: one loop, so that the connection's
  /// loop is always ``eventLoop``.
  package let group: MultiThreadedEventLoopGroup
  package let eventLoop: any EventLoop

  private init(group: MultiThreadedEventLoopGroup) {
    self.group = group
    self.eventLoop = group.next()
  }

  package func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    self.eventLoop.execute {
      job.runSynchronously(on: self.asUnownedTaskExecutor())
    }
  }

  /// The process's PeerAgent event loop: one thread that every peer of the process with
  /// ``Peer/Config/Transport/Execution/eventLoop`` runs its connections and streams on. Like
  /// NIO's own singletons it lives as long as the process.
  package static let shared = EventLoopExecutor(group: MultiThreadedEventLoopGroup(numberOfThreads: 1))
}
