private import NIOCore

extension Peer.Config {
  /// HTTP/2 transport tuning.
  public struct Transport: Sendable, Hashable {
    /// Flush coalescing: how long a write may wait for others to share one flush, and how many
    /// bytes it may gather; `nil` disables coalescing.
    public struct FlushCoalescing: Sendable, Hashable {
      /// The longest a write waits for others to share its flush.
      public var maximumDelay: Duration
      /// Flush at once when this many bytes are waiting.
      public var maximumBytes: Int

      /// Creates a flush-coalescing setting.
      public init(maximumDelay: Duration, maximumBytes: Int) {
        self.maximumDelay = maximumDelay
        self.maximumBytes = maximumBytes
      }
    }

    /// Where the code of each stream runs: reading, PeerAgent's bookkeeping, the handler, and
    /// writing the reply.
    public struct Execution: Sendable, Hashable {
      enum Wrapped: Sendable, Hashable {
        case eventLoop
        case concurrencyPool
      }

      let wrapped: Wrapped

      /// On the event loop that owns the connection: the peer's connections are spread over
      /// ``Transport/eventLoops`` loops, and a message goes from the socket to the handler and
      /// back without leaving its connection's loop. The fastest round trip (no thread hops),
      /// but the handler shares that thread with the other connections on the loop: a handler
      /// that computes for long, or blocks, should move its work elsewhere (a `Task` of its
      /// own, or `withTaskExecutorPreference(globalConcurrentExecutor)`), or use
      /// ``concurrencyPool``.
      public static var eventLoop: Self { Self(wrapped: .eventLoop) }

      /// On Swift's concurrency pool, grpc-swift's own default: connections on NIO's shared
      /// event loops, a stream's code (and the handler) on the pool, and a thread hop each way
      /// for every message.
      public static var concurrencyPool: Self { Self(wrapped: .concurrencyPool) }
    }

    /// Flush coalescing on every connection; `nil` disables it.
    public var flushCoalescing: FlushCoalescing?
    /// Where each stream's code, handler included, runs.
    public var execution: Execution
    /// How many event-loop threads the peer's connections are spread over (with
    /// ``Execution/eventLoop``): one per core by default, so that a hub with many dialers uses
    /// every core. Each connection stays on one loop; a dialer's connection goes to the loops
    /// in turn. Peers of one process with the same number share the loops.
    public var eventLoops: Int
    /// The largest gRPC message, encoded, that this peer sends or accepts, in both directions
    /// of every stream. A request above it fails at once with
    /// ``PeerAgentError/Code/messageTooLarge`` and is never queued; PeerAgent peers announce
    /// their limit, so a request above the remote's fails the same way instead of being written.
    public var maximumMessageBytes: Int

    /// Creates a transport configuration; see ``defaults`` for the usual values. `eventLoops`
    /// `nil` is one per core.
    public init(
      flushCoalescing: FlushCoalescing?,
      execution: Execution = .eventLoop,
      eventLoops: Int? = nil,
      maximumMessageBytes: Int = 4 * 1024 * 1024
    ) {
      self.flushCoalescing = flushCoalescing
      self.execution = execution
      self.eventLoops = max(1, eventLoops ?? System.coreCount)
      self.maximumMessageBytes = maximumMessageBytes
    }

    /// Flush coalescing with no delay and up to 64 KiB: writes made together still share a
    /// flush, but a lone request or reply is never held back. grpc-swift-nio-transport's own
    /// default waits up to 100 µs, which a ping-pong round trip pays on both sides. Streams run
    /// on their connection's event loop (``Execution/eventLoop``), one loop per core. Messages
    /// up to 4 MiB (gRPC's usual limit).
    public static var defaults: Self {
      Self(
        flushCoalescing: FlushCoalescing(maximumDelay: .zero, maximumBytes: 64 * 1024),
        execution: .eventLoop,
        eventLoops: System.coreCount,
        maximumMessageBytes: 4 * 1024 * 1024
      )
    }
  }
}
