private import Synchronization

/// What one stream writer has to write: any number of producers, one consumer that takes
/// everything pending at once, so that a burst goes to the RPC writer in one call
/// (`write(contentsOf:)`) rather than one suspension per message.
///
/// Unbounded, like the `AsyncStream` it replaces: what feeds it is bounded elsewhere (the
/// outbox's window, the inbound concurrency limit). Ends with ``finish()``, or when its
/// consumer is cancelled; after that ``enqueue(_:)`` returns `false`.
final class WriteQueue<Element: Sendable>: Sendable {
  private struct State {
    var pending: [Element] = []
    var consumer: CheckedContinuation<[Element]?, Never>?
    var finished = false
  }

  private let state = Mutex(State())

  init() {}

  /// Adds one element. Returns `false` when the queue has ended.
  @discardableResult
  func enqueue(_ element: Element) -> Bool {
    let (accepted, consumer): (Bool, CheckedContinuation<[Element]?, Never>?) = self.state.withLock { state in
      if state.finished { return (false, nil) }
      if let consumer = state.consumer {
        state.consumer = nil
        return (true, consumer)
      }
      state.pending.append(element)
      return (true, nil)
    }
    consumer?.resume(returning: [element])
    return accepted
  }

  /// Everything pending, in order, waiting until there is something; `nil` once the queue has
  /// ended and is empty.
  func next() async -> [Element]? {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<[Element]?, Never>) in
        let now: [Element]?? = self.state.withLock { state in
          if !state.pending.isEmpty {
            var batch: [Element] = []
            swap(&batch, &state.pending)
            return .some(batch)
          }
          if state.finished || Task.isCancelled {
            state.finished = true
            return .some(nil)
          }
          state.consumer = continuation
          return .none
        }
        if let now { continuation.resume(returning: now) }
      }
    } onCancel: {
      self.finish()
    }
  }

  /// Ends the queue: elements already pending are still handed out, new ones are refused.
  func finish() {
    let consumer = self.state.withLock { state in
      state.finished = true
      defer { state.consumer = nil }
      return state.consumer
    }
    consumer?.resume(returning: nil)
  }
}
