import Testing

@testable import PeerAgent

@Suite("Correlation of replies to requests")
struct PendingRequestsTests {
  private func send(
    _ pending: PendingRequests,
    _ id: String,
    deadline: ContinuousClock.Instant = .now.advanced(by: .seconds(10))
  ) -> Task<ReplyBody, any Error> {
    Task {
      try await withCheckedThrowingContinuation { continuation in
        if pending.register(id: id, deadline: deadline, continuation: continuation) {
          pending.markWritten(id: id)
        }
      }
    }
  }

  private func waitForCount(_ pending: PendingRequests, _ count: Int) async {
    for _ in 0 ..< 500 where pending.count != count {
      try? await Task.sleep(for: .milliseconds(2))
    }
  }

  @Test("Replies with an id match their request, in any order")
  func matchesByID() async throws {
    let pending = PendingRequests()
    let a = self.send(pending, "a")
    await self.waitForCount(pending, 1)
    let b = self.send(pending, "b")
    await self.waitForCount(pending, 2)
    #expect(pending.resolve(ReplyBody(id: "b", text: "to b")))
    #expect(pending.resolve(ReplyBody(id: "a", text: "to a")))
    #expect(try await a.value.text == "to a")
    #expect(try await b.value.text == "to b")
    #expect(!pending.resolve(ReplyBody(id: "a", text: "late")))
  }

  @Test("Replies without an id match the oldest waiting request")
  func matchesInOrder() async throws {
    let pending = PendingRequests()
    var tasks: [Task<ReplyBody, any Error>] = []
    for n in 0 ..< 5 {
      tasks.append(self.send(pending, "r\(n)"))
      await self.waitForCount(pending, n + 1)
    }
    // One answered by id first; the id-less ones then take the rest in order.
    #expect(pending.resolve(ReplyBody(id: "r2", text: "two")))
    for text in ["zero", "one", "three", "four"] {
      #expect(pending.resolve(ReplyBody(id: "", text: text)))
    }
    let replies = try await tasks.asyncMap { try await $0.value }
    #expect(replies.map(\.text) == ["zero", "one", "two", "three", "four"])
    #expect(replies.map(\.id) == ["r0", "r1", "r2", "r3", "r4"])
    #expect(!pending.resolve(ReplyBody(id: "", text: "nobody waits")))
  }

  @Test("Replies without an id follow the order requests were written, not registered")
  func matchesInWireOrder() async throws {
    let pending = PendingRequests()
    let deadline = ContinuousClock.now.advanced(by: .seconds(10))
    let first = Task {
      try await withCheckedThrowingContinuation { continuation in
        _ = pending.register(id: "first", deadline: deadline, continuation: continuation)
      }
    }
    await self.waitForCount(pending, 1)
    let second = Task {
      try await withCheckedThrowingContinuation { continuation in
        _ = pending.register(id: "second", deadline: deadline, continuation: continuation)
      }
    }
    await self.waitForCount(pending, 2)
    // Two concurrent senders: the second reached the stream first.
    pending.markWritten(id: "second")
    pending.markWritten(id: "first")
    pending.resolve(ReplyBody(id: "", text: "answer to the first written"))
    pending.resolve(ReplyBody(id: "", text: "answer to the second written"))
    #expect(try await second.value.text == "answer to the first written")
    #expect(try await first.value.text == "answer to the second written")
  }

  @Test("Overdue requests fail, others keep waiting")
  func expires() async throws {
    let pending = PendingRequests()
    let late = self.send(pending, "late", deadline: .now.advanced(by: .milliseconds(-1)))
    let onTime = self.send(pending, "on-time")
    await self.waitForCount(pending, 2)
    pending.expire(now: .now) { id in PeerAgentError(code: .timedOut, message: id) }
    await #expect(throws: PeerAgentError(code: .timedOut, message: "late")) { try await late.value }
    #expect(pending.count == 1)
    pending.resolve(ReplyBody(id: "on-time", text: "ok"))
    #expect(try await onTime.value.text == "ok")
  }

  @Test("Closing fails every waiting request and refuses new ones")
  func closes() async throws {
    let pending = PendingRequests()
    let waiting = self.send(pending, "x")
    await self.waitForCount(pending, 1)
    let error = PeerAgentError(code: .disconnected, message: "gone")
    pending.close(with: error)
    await #expect(throws: error) { try await waiting.value }
    await #expect(throws: error) { try await self.send(pending, "y").value }
  }
}

extension Sequence {
  func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
    var result: [T] = []
    for element in self { result.append(try await transform(element)) }
    return result
  }
}
