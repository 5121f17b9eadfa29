import ContactProto
import Foundation
import NIOCore
import NIOEmbedded
import Testing

@testable import PeerAgent

/// The limits a listener puts on any one remote, piece by piece; the hostile suite
/// (scripts/hostile.sh) checks them all again against a running `peer-agent run`.
@Suite("Limits: reply budgets, connection caps, the advertised stream limit, gRPC framing, plaintext state")
struct LimitsTests {
  @Test("A stream's reply budget stops reading at its count and its bytes, and reopens as replies are written")
  func replyBudget() async throws {
    let budget = ReplyBudget(count: 2, bytes: 100)
    try await budget.acquire()
    try await budget.acquire()
    let third = Task { try await budget.acquire() }
    try await Task.sleep(for: .milliseconds(50))
    #expect(budget.held == 2, "the third message waits: two are held")
    var reply = Contact_Result()
    reply.id = "1"
    reply.ret = String(repeating: "r", count: 200)
    budget.charge(ReplyBudget.cost(of: reply))
    budget.release(count: 1, bytes: 0)  // the other one was cancelled: no reply
    try await Task.sleep(for: .milliseconds(50))
    #expect(budget.held == 1, "a place is free, but the queued bytes are over the limit: still waiting")
    budget.written([reply])
    try await third.value
    #expect(budget.held == 1, "the written reply gave its place and bytes back")

    // A reader waiting when its stream is cancelled stops waiting.
    try await budget.acquire()
    let cancelled = Task { try await budget.acquire() }
    cancelled.cancel()
    await #expect(throws: CancellationError.self) { try await cancelled.value }
  }

  @Test("Connection caps: per address and in all; an unused connection gives way, established ones never")
  func connectionLimiter() throws {
    let limiter = ConnectionLimiter(maximum: 3, maximumPerAddress: 2)
    let channels = (0 ..< 6).map { _ in EmbeddedChannel() }
    guard case .admitted(let a1, nil) = limiter.admit(channels[0], from: "10.0.0.1"),
      case .admitted(let a2, nil) = limiter.admit(channels[1], from: "10.0.0.1")
    else { Issue.record("the first two from one address are admitted"); return }
    limiter.established(a1)
    // A third from the same address takes the place of the unused one.
    guard case .admitted(let a3, let evicted?) = limiter.admit(channels[2], from: "10.0.0.1") else {
      Issue.record("the third from one address replaces its unused connection")
      return
    }
    #expect(evicted === channels[1])
    limiter.established(a3)
    guard case .refused(let reason) = limiter.admit(channels[3], from: "10.0.0.1") else {
      Issue.record("a fourth is refused: both are in use")
      return
    }
    #expect(reason.contains("per address"))
    _ = a2
    guard case .admitted(let b1, nil) = limiter.admit(channels[4], from: "10.0.0.2") else {
      Issue.record("another address is admitted")
      return
    }
    limiter.established(b1)
    guard case .refused(let total) = limiter.admit(channels[5], from: "10.0.0.3") else {
      Issue.record("the listener's cap holds")
      return
    }
    #expect(total.contains("listener's limit"))
    limiter.release(b1)
    #expect(limiter.count == 2)
    guard case .admitted = limiter.admit(channels[5], from: "10.0.0.3") else {
      Issue.record("a released place is taken again")
      return
    }
  }

  @Test("The first SETTINGS frame tells the real stream limit, wherever the writes split it")
  func settingsRewrite() throws {
    // SETTINGS: INITIAL_WINDOW_SIZE 65535, MAX_CONCURRENT_STREAMS 1024, MAX_FRAME_SIZE 16384.
    let payload: [UInt8] = [0, 4, 0, 0, 0xFF, 0xFF, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 0x40, 0]
    let frame: [UInt8] = [0, 0, UInt8(payload.count), 4, 0, 0, 0, 0, 0] + payload + [0, 0, 4, 8, 0, 0, 0, 0, 0]
    for split in 1 ..< frame.count {
      var rewriter = SettingsRewriter()
      rewriter.maximumConcurrentStreams = 128
      var first = ByteBuffer(bytes: frame[..<split])
      var second = ByteBuffer(bytes: frame[split...])
      rewriter.rewrite(&first)
      if !rewriter.isDone { rewriter.rewrite(&second) }
      let bytes = Array(first.readableBytesView) + Array(second.readableBytesView)
      #expect(Array(bytes[15 ..< 21]) == [0, 3, 0, 0, 0, 128], "split at \(split)")
      #expect(Array(bytes[9 ..< 15]) == [0, 4, 0, 0, 0xFF, 0xFF], "other settings untouched (split at \(split))")
      #expect(Array(bytes[27...]) == [0, 0, 4, 8, 0, 0, 0, 0, 0], "later frames untouched (split at \(split))")
    }
  }

  @Test("gRPC framing: a stream that ends inside a prefix or a body is cut short; whole messages are not")
  func framing() {
    var framing = GRPCFraming()
    let message: [UInt8] = [0, 0, 0, 0, 3, 1, 2, 3]
    framing.consume(message.count, from: ByteBuffer(bytes: message))
    #expect(!framing.isMidMessage)
    framing.consume(3, from: ByteBuffer(bytes: [0, 0, 0]))
    #expect(framing.isMidMessage, "inside a prefix")
    framing.consume(2, from: ByteBuffer(bytes: [3, 0xE8]))
    #expect(framing.isMidMessage, "a prefix promising 1,000 bytes, none arrived")
    #expect(framing.largestLength == 1000)
    framing.consume(1000, from: ByteBuffer(repeating: 7, count: 1000))
    #expect(!framing.isMidMessage)
    var empty = GRPCFraming()
    empty.consume(5, from: ByteBuffer(bytes: [0, 0, 0, 0, 0]))
    #expect(!empty.isMidMessage, "an empty message is whole")
  }

  @Test("Reports are held back beyond their allowance per interval, and counted")
  func reportThrottle() {
    let throttle = ReportThrottle(interval: .seconds(10))
    let start = ContinuousClock.now
    #expect(throttle.admit("a", now: start) == 0)
    #expect(throttle.admit("a", now: start + .seconds(1)) == nil)
    #expect(throttle.admit("a", now: start + .seconds(2)) == nil)
    #expect(throttle.admit("b", now: start + .seconds(2)) == 0, "another kind has its own allowance")
    #expect(throttle.admit("a", now: start + .seconds(11)) == 2, "the next report counts the two held back")
    for n in 0 ..< 20 { #expect(throttle.admit("all", allowing: 20, now: start + .milliseconds(n)) == 0) }
    #expect(throttle.admit("all", allowing: 20, now: start + .seconds(1)) == nil)
  }

  @Test("A duration option of 1e20 seconds, or not a number, is cut to what every conversion holds")
  func hugeDurations() {
    #expect(Duration.fromSeconds(1e20) == .seconds(Int64(Duration.longestSeconds)))
    #expect(Duration.fromSeconds(-1e300) == .seconds(-Int64(Duration.longestSeconds)))
    #expect(Duration.fromSeconds(.nan) == .zero)
    #expect(Duration.clampedSeconds(.infinity) == .seconds(Int64(Duration.longestSeconds)))
    #expect(TimeAmount(Duration.fromSeconds(1e20)).nanoseconds == Int64(Duration.longestSeconds) * 1_000_000_000)
  }

  @Test("In plaintext, nothing of a remote is kept once its connection ends")
  func plaintextStateIsRemoved() async throws {
    let hub = try TestPeer(name: "hub", mode: .single, security: .plaintext, listen: true)
    try await withRunningPeers([hub], timeout: .seconds(90)) {
      let address = try await hub.peer.listeningAddress
      for round in 0 ..< 4 {
        let edge = try TestPeer(name: "edge", mode: .single, security: .plaintext, connect: [Peer.Target(address: address)])
        try await withRunningPeers([edge]) {
          let connected = await hub.events.wait(timeout: .seconds(10)) {
            if case .connected(let peer, _) = $0 { return !peer.isVerified && peer.name.contains(":") }
            return false
          }
          guard case .connected(let remote, _) = connected else {
            Issue.record("round \(round): the edge did not connect")
            return
          }
          _ = try await edge.peer.send("from edge \(round)")
          _ = try await hub.peer.send("to edge \(round)", to: remote.name)
        }
        hub.events.clear()
      }
      let deadline = ContinuousClock.now.advanced(by: .seconds(10))
      while hub.peer.context.table.remoteCount > 0, ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
      }
      #expect(hub.peer.context.table.remoteCount == 0, "link records of plaintext remotes that left")
      #expect(hub.peer.context.outbox.queueCount == 0, "outbox queues of plaintext remotes that left")
    }
  }
}
