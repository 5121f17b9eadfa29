private import Synchronization

/// Matches replies to requests in order on one raw stream (the raw baseline has no ids), and
/// hands the writer one credit per reply so it keeps at most `window` in flight.
final class FIFOTimer: Sendable {
  private struct State {
    var starts: [ContinuousClock.Instant] = []
    var head = 0
    var latencies: [Double] = []
  }

  private let state = Mutex(State())
  let credits: AsyncStream<Void>
  private let creditContinuation: AsyncStream<Void>.Continuation

  init() {
    (self.credits, self.creditContinuation) = AsyncStream.makeStream()
  }

  func started() {
    let now = ContinuousClock.now
    self.state.withLock { $0.starts.append(now) }
  }

  func replied() {
    let now = ContinuousClock.now
    self.state.withLock { state in
      guard state.head < state.starts.count else { return }
      state.latencies.append(WindowedLoad.microseconds(now - state.starts[state.head]))
      state.head += 1
    }
    self.creditContinuation.yield()
  }

  func finish() { self.creditContinuation.finish() }

  var latencies: [Double] { self.state.withLock { $0.latencies } }

  /// Writes `count` messages with `write`, at most `window` unanswered, then waits for every
  /// reply. Returns the latencies (µs) and the wall time.
  func run(count: Int, window: Int, write: (Int) async throws -> Void) async throws -> (latencies: [Double], seconds: Double) {
    let start = ContinuousClock.now
    var credits = self.credits.makeAsyncIterator()
    for index in 0 ..< count {
      if index >= window {
        guard await credits.next() != nil else { break }
      }
      self.started()
      try await write(index)
    }
    for _ in 0 ..< min(window, count) {
      guard await credits.next() != nil else { break }
    }
    return (self.latencies, WindowedLoad.seconds(.now - start))
  }
}
