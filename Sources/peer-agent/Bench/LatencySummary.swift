private import Foundation

/// Latency percentiles, exact: the bench keeps every sample (counts are bounded).
struct LatencySummary: Codable, Sendable {
  var count: Int
  var p50: Double
  var p90: Double
  var p99: Double
  var p999: Double
  var max: Double
  /// Up to 200 points of the CDF: (latency µs, fraction ≤).
  var cdf: [[Double]]

  init(microseconds samples: [Double]) {
    let sorted = samples.sorted()
    func at(_ q: Double) -> Double {
      guard !sorted.isEmpty else { return 0 }
      let index = Swift.min(sorted.count - 1, Swift.max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))
      return sorted[index]
    }
    self.count = sorted.count
    self.p50 = at(0.5)
    self.p90 = at(0.9)
    self.p99 = at(0.99)
    self.p999 = at(0.999)
    self.max = sorted.last ?? 0
    let step = Swift.max(1, sorted.count / 200)
    self.cdf = stride(from: 0, to: sorted.count, by: step).map { [sorted[$0], Double($0 + 1) / Double(sorted.count)] }
    if let last = sorted.last { self.cdf.append([last, 1]) }
  }
}
