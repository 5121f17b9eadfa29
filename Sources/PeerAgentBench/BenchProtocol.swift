private import Foundation

/// What `peer-agent bench` and its `bench-worker` processes say to each other: one JSON object
/// a line, commands on the worker's standard input, events on its standard output.
enum BenchProtocol {
  struct Command: Codable, Sendable {
    /// `load`, `probe`, `heap` or `exit`.
    var cmd: String
    /// Who to send to (round-robin); empty: the only connected peer.
    var to: [String] = []
    var count: Int = 0
    var window: Int = 1
    var payload: Int = 16
    var warmup: Int = 0
    /// `probe`: give up after this many seconds.
    var timeout: Double = 30
    /// `heap`: first hand the allocator's free pages back to the system (`malloc_trim`).
    var trim: Bool = false
  }

  struct Event: Codable, Sendable {
    /// `listening`, `connected`, `result`, `probed`, `error`.
    var event: String
    var address: String?
    var peer: String?
    var result: LoadResult?
    /// `probed`: wall-clock time (seconds since 1970) of the first successful reply.
    var at: Double?
    var message: String?
    var heap: Heap?
  }

  /// What the worker's allocator holds (glibc's `mallinfo2`), and its resident size then.
  struct Heap: Codable, Sendable {
    /// Bytes handed out and not yet freed, in KiB.
    var inUseKiB: Int
    /// Bytes freed but kept by the allocator, in KiB.
    var freeKiB: Int
    /// VmRSS when this was taken, in KiB.
    var rssKiB: Int
  }

  struct LoadResult: Codable, Sendable {
    var requests: Int
    var errors: Int
    var seconds: Double
    var latency: LatencySummary
    var firstError: String?
  }

  static func encode<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
  }
}
