private import Foundation
private import Synchronization

/// Which (sender, id) keys may be in the SQLite window: a Bloom filter in memory, so that a
/// request the window cannot hold — nearly every request, since repeats are rare — is not
/// looked up on disk (a read transaction, its locks and page reads) before it is handled.
///
/// It never says "absent" for a key on disk: a key is added before its write is queued, and
/// kept for two generations. A generation is dropped only once the window's prune has removed,
/// by age, every key it can hold (``pruned(before:)``): what is left on disk is younger and in
/// the generations kept. It may say "present" for a key that is not (about 1 in 400 at half a
/// million keys a generation, 1 in 40 at a million): the window is then read, as before.
final class WindowFilter: Sendable {
  /// Bits per generation: 8 Mi (1 MiB).
  static let bits = 1 << 23
  private static let probes = 4

  private struct Generation {
    var words = [UInt64](repeating: 0, count: WindowFilter.bits / 64)
    /// When its first key was added (seconds since 1970): every key in it is younger.
    var startedAt: Double

    func contains(_ positions: [Int]) -> Bool {
      positions.allSatisfy { self.words[$0 >> 6] & (1 << UInt64($0 & 63)) != 0 }
    }

    mutating func insert(_ positions: [Int]) {
      for position in positions { self.words[position >> 6] |= 1 << UInt64(position & 63) }
    }
  }

  private struct State {
    var current: Generation
    var previous: Generation?
  }

  private let state: Mutex<State>

  init(now: Double = Date().timeIntervalSince1970) {
    self.state = Mutex(State(current: Generation(startedAt: now), previous: nil))
  }

  /// Adds a key: from now on it may be in the window.
  func insert(sender: String, id: String) {
    let positions = Self.positions(sender: sender, id: id)
    self.state.withLock { $0.current.insert(positions) }
  }

  /// Whether the key may be in the window (`false`: it is not).
  func mayContain(sender: String, id: String) -> Bool {
    let positions = Self.positions(sender: sender, id: id)
    return self.state.withLock { state in
      state.current.contains(positions) || (state.previous?.contains(positions) ?? false)
    }
  }

  /// The window's prune removes every key recorded before `cutoff`: once that covers the
  /// whole current generation's past, the previous one holds nothing left on disk.
  func pruned(before cutoff: Double, now: Double = Date().timeIntervalSince1970) {
    self.state.withLock { state in
      guard cutoff >= state.current.startedAt else { return }
      state.previous = state.current
      state.current = Generation(startedAt: now)
    }
  }

  /// `probes` bit positions from two hashes of the key (Kirsch–Mitzenmacher). Swift's hasher
  /// is seeded per process, which the filter, rebuilt every start, does not mind.
  private static func positions(sender: String, id: String) -> [Int] {
    var hasher = Hasher()
    hasher.combine(sender)
    hasher.combine(id)
    let hash = UInt64(bitPattern: Int64(hasher.finalize()))
    let first = hash & 0xFFFF_FFFF
    let second = (hash >> 32) | 1
    return (0 ..< Self.probes).map { Int((first &+ UInt64($0) &* second) % UInt64(Self.bits)) }
  }
}
