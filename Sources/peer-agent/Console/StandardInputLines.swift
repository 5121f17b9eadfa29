private import Foundation

/// The lines of standard input, as an async sequence.
///
/// Reading standard input blocks, and a blocked read must not hold one of the few threads of
/// Swift's cooperative pool; so one plain thread reads and hands each line over. Iterating
/// ends at end of input, or when the iterating task is cancelled (the thread then stays
/// blocked in `read` until the process exits, which is all it can do).
enum StandardInputLines {
  static func make() -> AsyncStream<String> {
    let (lines, continuation) = AsyncStream<String>.makeStream()
    let thread = Thread {
      while let line = readLine(strippingNewline: true) {
        if case .terminated = continuation.yield(line) { return }
      }
      continuation.finish()
    }
    thread.name = "peer-agent stdin"
    thread.start()
    return lines
  }
}
