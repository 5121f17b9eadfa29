extension Peer.Config {
  /// Delivery: where unanswered requests and the de-duplication window live, and the window of
  /// unanswered requests per remote peer.
  public struct Delivery: Sendable, Hashable {
    /// Where a peer keeps its outbox and its de-duplication window.
    public struct Storage: Sendable, Hashable {
      enum Wrapped: Sendable, Hashable {
        case inMemory
        case sqlite(directory: String)
      }

      let wrapped: Wrapped

      /// In memory: lost when the process ends. For tests and benchmarks.
      public static var inMemory: Self { Self(wrapped: .inMemory) }

      /// An embedded SQLite database in `directory` (created if needed, locked while the peer
      /// runs): a restart resends what was unanswered and handles no request twice.
      public static func sqlite(directory: String) -> Self { Self(wrapped: .sqlite(directory: directory)) }

      /// Whether what is stored survives the process.
      public var isDurable: Bool {
        if case .sqlite = self.wrapped { return true }
        return false
      }
    }

    /// What a receiver guarantees about running its handler once per request, when it
    /// crashes between calling the handler and recording the reply.
    public struct Handling: Sendable, Hashable {
      enum Wrapped: Sendable, Hashable {
        case atLeastOnce
        case atMostOnce
      }

      let wrapped: Wrapped

      /// The reply is recorded after the handler returns: a crash in between runs the handler
      /// again for the resent request (rarely: the window is the handler's own duration).
      /// Every request gets a real answer. The default.
      public static var atLeastOnce: Self { Self(wrapped: .atLeastOnce) }

      /// The acceptance of each request is recorded (on disk, with a durable store) before
      /// the handler runs: after a crash, a resent request that was accepted but has no
      /// recorded reply is answered with ``PeerAgentError/Code/outcomeUnknown`` and never
      /// handled again. For handlers that must never run twice (a payment, a command to a
      /// machine); costs one more write per request.
      public static var atMostOnce: Self { Self(wrapped: .atMostOnce) }
    }

    /// Where the outbox and the de-duplication window live.
    public var storage: Storage
    /// At-least-once (the default) or at-most-once handling across a crash.
    public var handling: Handling
    /// The most requests to one remote peer that may be unanswered at once; ``Peer/send(_:to:timeout:)``
    /// waits for room beyond it (backpressure), so memory stays bounded.
    public var maximumInFlight: Int
    /// How long a receiver remembers the reply it gave to a request id, to answer a repeat
    /// without calling the handler again. Keep it longer than senders' time to live.
    public var replyRetention: Duration
    /// The most replies remembered; the oldest are forgotten first.
    public var replyCapacity: Int
    /// The most bytes the remembered replies may hold, all senders together; when full, the
    /// sender holding the most forgets its oldest.
    public var replyBytes: Int = 256 * 1024 * 1024
    /// The most bytes one sender's remembered replies may hold: a sender beyond it forgets its
    /// own oldest, never another's.
    public var replyBytesPerSender: Int = 32 * 1024 * 1024

    /// Creates a delivery configuration; see ``defaults`` for the usual values.
    public init(
      storage: Storage,
      maximumInFlight: Int,
      replyRetention: Duration,
      replyCapacity: Int,
      handling: Handling = .atLeastOnce
    ) {
      self.storage = storage
      self.handling = handling
      self.maximumInFlight = maximumInFlight
      self.replyRetention = replyRetention
      self.replyCapacity = replyCapacity
    }

    /// In memory, 1,024 unanswered requests per remote peer, replies remembered for an hour
    /// (at most 1,000,000 and 256 MiB, 32 MiB per sender), at-least-once handling.
    public static var defaults: Self {
      Self(
        storage: .inMemory,
        maximumInFlight: 1024,
        replyRetention: .seconds(3600),
        replyCapacity: 1_000_000,
        handling: .atLeastOnce
      )
    }
  }
}

extension Peer.Config.Delivery {
  /// Opens the store ``storage`` names: the one place that maps a storage choice to a
  /// ``DeliveryStore``.
  var windowBounds: WindowBounds {
    WindowBounds(count: self.replyCapacity, bytes: self.replyBytes, bytesPerSender: self.replyBytesPerSender)
  }

  func makeStore() throws -> any DeliveryStore {
    switch self.storage.wrapped {
    case .inMemory: InMemoryDeliveryStore(bounds: self.windowBounds)
    case .sqlite(let directory): try SQLiteDeliveryStore(directory: directory)
    }
  }
}
