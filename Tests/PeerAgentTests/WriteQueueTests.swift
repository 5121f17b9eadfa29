import Testing

@testable import PeerAgent

@Suite("WriteQueue: batches for one stream writer")
struct WriteQueueTests {
  @Test("Everything pending is handed over at once, in order; a waiting consumer gets the next one")
  func batches() async throws {
    let queue = WriteQueue<Int>()
    for n in 0 ..< 5 { #expect(queue.enqueue(n)) }
    #expect(await queue.next() == [0, 1, 2, 3, 4])

    let waiting = Task { await queue.next() }
    // Let the consumer park before the element arrives.
    for _ in 0 ..< 100 { await Task.yield() }
    #expect(queue.enqueue(5))
    #expect(await waiting.value == [5])
  }

  @Test("finish: what is pending is still handed out, then nil; new elements are refused")
  func finish() async {
    let queue = WriteQueue<Int>()
    queue.enqueue(1)
    queue.finish()
    #expect(!queue.enqueue(2))
    #expect(await queue.next() == [1])
    #expect(await queue.next() == nil)
  }

  @Test("A cancelled consumer ends the queue, like a cancelled AsyncStream iterator")
  func cancellation() async {
    let queue = WriteQueue<Int>()
    let consumer = Task { await queue.next() }
    for _ in 0 ..< 100 { await Task.yield() }
    consumer.cancel()
    #expect(await consumer.value == nil)
    #expect(!queue.enqueue(1))
  }
}
