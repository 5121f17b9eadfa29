import Foundation
import Testing

@testable import PeerAgent

/// Both built-in stores, through the same protocol and the same checks: what one promises,
/// the other keeps.
@Suite("Delivery stores: in memory and SQLite behave alike")
struct DeliveryStoreTests {
  enum Kind: String, CaseIterable, Sendable {
    case inMemory
    case sqlite
  }

  /// Runs `body` on a fresh store of `kind`, and removes its folder afterwards.
  static func withStore(_ kind: Kind, _ body: (any DeliveryStore) throws -> Void) throws {
    switch kind {
    case .inMemory:
      try body(InMemoryDeliveryStore(capacity: 100))
    case .sqlite:
      let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-store-\(UUID().uuidString)").path
      defer { try? FileManager.default.removeItem(atPath: directory) }
      let store = try SQLiteDeliveryStore(directory: directory)
      defer { try? store.close() }
      try body(store)
    }
  }

  @Test("A state folder in use by an open store is refused; once closed, it opens at once")
  func folderLock() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-lock-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let first = try SQLiteDeliveryStore(directory: directory)
    #expect {
      _ = try SQLiteDeliveryStore(directory: directory)
    } throws: { "\($0)".contains("is in use by another peer-agent process") }
    try first.close()
    let second = try SQLiteDeliveryStore(directory: directory)
    try second.close()
  }

  @Test("Outgoing requests: kept in order, answered, readdressed, forgotten", arguments: Kind.allCases)
  func outgoing(kind: Kind) throws {
    try Self.withStore(kind) { store in
      #expect(store.isDurable == (kind == .sqlite))
      for id in ["a", "b", "c"] {
        try store.recordOutgoing(OutgoingRecord(id: id, peer: "127.0.0.1:7000", text: "text \(id)", expiresAt: 1000))
      }
      try store.renamePeer("127.0.0.1:7000", to: "hub")
      let answer = Answer(id: "b", text: "done", error: nil, code: nil, from: .verified("hub"))
      try store.recordAnswer(answer)
      try store.removeOutgoing(id: "a")
      let records = try store.unansweredOutgoing()
      #expect(records.map(\.id) == ["b", "c"])
      #expect(records.allSatisfy { $0.peer == "hub" })
      #expect(records[0].answer == answer)
      #expect(records[1].answer == nil)
      #expect(records[1].text == "text c")
      #expect(records[1].expiresAt == 1000)
    }
  }

  @Test("The window: replies by sender and id, acceptances that keep a reply, pruning by age and count", arguments: Kind.allCases)
  func window(kind: Kind) throws {
    try Self.withStore(kind) { store in
      try store.recordReply(Answer(id: "1", text: "one"), from: "edge", at: 10)
      try store.recordReply(Answer(id: "2", text: "", error: "failed"), from: "edge", at: 20)
      #expect(try store.windowEntry(for: "1", from: "edge") == .answered(Answer(id: "1", text: "one")))
      #expect(try store.windowEntry(for: "2", from: "edge") == .answered(Answer(id: "2", text: "", error: "failed")))
      #expect(try store.windowEntry(for: "1", from: "other") == nil, "another sender's id is another request")

      try store.recordAcceptance(of: "3", from: "edge", at: 30)
      try store.recordAcceptance(of: "1", from: "edge", at: 30)
      #expect(try store.windowEntry(for: "3", from: "edge") == .accepted)
      #expect(try store.windowEntry(for: "1", from: "edge") == .answered(Answer(id: "1", text: "one")), "an acceptance keeps a reply")
      try store.recordReply(Answer(id: "3", text: "three"), from: "edge", at: 31)
      #expect(try store.windowEntry(for: "3", from: "edge") == .answered(Answer(id: "3", text: "three")))

      try store.pruneReplies(before: 15, bounds: WindowBounds(count: 100))
      #expect(try store.windowEntry(for: "1", from: "edge") == nil, "older than the retention")
      #expect(try store.windowEntry(for: "2", from: "edge") != nil)
      try store.pruneReplies(before: 0, bounds: WindowBounds(count: 1))
      #expect(try store.windowEntry(for: "2", from: "edge") == nil, "beyond the capacity: oldest first")
      #expect(try store.windowEntry(for: "3", from: "edge") != nil)
    }
  }

  @Test("A sender that floods the window forgets its own replies, never another's", arguments: Kind.allCases)
  func windowShares(kind: Kind) throws {
    try Self.withStore(kind) { store in
      let text = String(repeating: "x", count: 1000)
      let cost = WindowBounds.cost(id: "q-0", text: text, error: nil)
      for i in 0 ..< 5 {
        try store.recordReply(Answer(id: "q-\(i)", text: text), from: "quiet", at: Double(i))
      }
      for i in 0 ..< 200 {
        try store.recordReply(Answer(id: "f-\(i)", text: text), from: "flood", at: Double(10 + i))
      }
      // Each sender may hold 20 entries; all of them together 30.
      let bounds = WindowBounds(count: 1_000, bytes: 30 * cost, bytesPerSender: 20 * cost)
      try store.pruneReplies(before: 0, bounds: bounds)
      for i in 0 ..< 5 {
        #expect(try store.windowEntry(for: "q-\(i)", from: "quiet") != nil, "the quiet sender keeps reply \(i)")
      }
      let kept = try (0 ..< 200).filter { try store.windowEntry(for: "f-\($0)", from: "flood") != nil }
      #expect(kept.count <= 20 && kept.count >= 18, "the flood keeps at most its share (kept \(kept.count))")
      #expect(kept.last == 199, "the flood keeps its newest")
      #expect(store.windowEvictions >= 180)

      // The whole window over its bytes: the sender holding the most gives way.
      for i in 0 ..< 40 {
        try store.recordReply(Answer(id: "o-\(i)", text: text), from: "other", at: Double(300 + i))
      }
      try store.pruneReplies(before: 0, bounds: WindowBounds(count: 1_000, bytes: 30 * cost, bytesPerSender: 20 * cost))
      for i in 0 ..< 5 {
        #expect(try store.windowEntry(for: "q-\(i)", from: "quiet") != nil, "the quiet sender still keeps reply \(i)")
      }
    }
  }

  @Test("In memory, the window keeps within its bounds as replies are recorded, not only when pruned")
  func windowBoundedOnRecord() throws {
    let text = String(repeating: "y", count: 4096)
    let cost = WindowBounds.cost(id: "r-0000", text: text, error: nil)
    let store = InMemoryDeliveryStore(bounds: WindowBounds(count: 1_000_000, bytes: 100 * cost, bytesPerSender: 50 * cost))
    for i in 0 ..< 30_000 {
      try store.recordReply(Answer(id: "r-\(i)", text: text), from: "flood", at: Double(i))
    }
    try store.recordReply(Answer(id: "a", text: text), from: "quiet", at: 40_000)
    let kept = (0 ..< 30_000).filter { (try? store.windowEntry(for: "r-\($0)", from: "flood")) != nil }
    #expect(kept.count <= 50)
    #expect(try store.windowEntry(for: "a", from: "quiet") != nil)
    #expect(store.windowEvictions >= 29_950)
  }

  @Test("The state folder is created 0700 and its database files 0600; a certificate folder 0700 with 0600 keys")
  func privateFiles() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("peer-agent-modes-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    func mode(_ path: String) throws -> Int {
      (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }
    let state = (root as NSString).appendingPathComponent("state")
    let store = try SQLiteDeliveryStore(directory: state)
    try store.recordOutgoing(OutgoingRecord(id: "a", peer: "hub", text: "x", expiresAt: 1))
    #expect(try mode(state) == 0o700)
    for file in ["delivery.sqlite", "delivery.sqlite-wal", "delivery.sqlite-shm", "lock"] {
      let path = (state as NSString).appendingPathComponent(file)
      if FileManager.default.fileExists(atPath: path) { #expect(try mode(path) == 0o600, "\(file)") }
    }
    try store.close()

    let certs = (root as NSString).appendingPathComponent("certs")
    try DevelopmentCertificates.write(names: ["hub"], to: certs)
    #expect(try mode(certs) == 0o700)
    #expect(try mode((certs as NSString).appendingPathComponent("ca-key.pem")) == 0o600)
    #expect(try mode((certs as NSString).appendingPathComponent("hub-key.pem")) == 0o600)
    #expect(try mode((certs as NSString).appendingPathComponent("hub.pem")) == 0o644)
    // A second run never overwrites the key; with force it writes a new one, still owner-only.
    let key = (certs as NSString).appendingPathComponent("hub-key.pem")
    let before = try String(contentsOfFile: key, encoding: .utf8)
    #expect(throws: PeerAgentError.self) { try DevelopmentCertificates.write(names: ["hub"], to: certs) }
    #expect(try String(contentsOfFile: key, encoding: .utf8) == before)
    try DevelopmentCertificates.write(names: ["hub"], to: certs, force: true)
    #expect(try String(contentsOfFile: key, encoding: .utf8) != before)
    #expect(try mode(key) == 0o600)
  }
}
