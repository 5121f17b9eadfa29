/// Where a peer publishes its ``PeerEvent``s: one stream, buffering the newest 1,024.
final class EventHub: Sendable {
  /// The events, for ``Peer/events``.
  let stream: AsyncStream<PeerEvent>
  private let continuation: AsyncStream<PeerEvent>.Continuation

  init() {
    (self.stream, self.continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1024))
  }

  /// Publishes one event.
  func emit(_ event: PeerEvent) {
    self.continuation.yield(event)
  }

  /// Ends the stream: the peer stopped.
  func finish() {
    self.continuation.finish()
  }
}
