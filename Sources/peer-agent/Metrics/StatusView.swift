private import Foundation
internal import PeerAgent

/// ``PeerStatus`` for `/status` (JSON) and for `peer-agent status` (a table).
enum StatusView {
  static func json(_ status: PeerStatus) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(status) else { return Array("{}".utf8) }
    return Array(data) + [UInt8(ascii: "\n")]
  }

  static func decode(_ bytes: [UInt8]) throws -> PeerStatus {
    try JSONDecoder().decode(PeerStatus.self, from: Data(bytes))
  }

  /// A heading line and one row per link:
  ///
  /// ```
  /// hub: single-channel, peer-agent 0.9.0, listening on 127.0.0.1:7000
  /// outbox 0 unanswered, 0 being handled
  /// cluster postgresql://…: 10 leases, 0 claimed from other hubs, 0 delivered by other hubs, 12 writes (mean 0.84 ms)
  ///
  /// PEER  STATE  LINK     UNANSWERED
  /// edge  ready  getTask  0
  /// ```
  static func table(_ status: PeerStatus) -> String {
    var lines: [String] = []
    let listening = status.listening.map { ", listening on \($0)" } ?? ""
    lines.append("\(status.peer): \(status.mode)-channel, peer-agent \(status.version)\(listening)")
    lines.append("outbox \(status.outboxDepth) unanswered, \(status.handling) being handled")
    if let cluster = status.cluster {
      let mean = cluster.writeMillisecondsMean.map { String(format: "%.2f ms", $0) } ?? "-"
      lines.append(
        "cluster \(cluster.database): \(cluster.leases) leases, \(cluster.claimed) claimed from other hubs, "
          + "\(cluster.forwarded) delivered by other hubs, \(cluster.writes) writes (mean \(mean))"
      )
    }
    lines.append("")
    if status.links.isEmpty {
      lines.append("no remote peer yet")
      return lines.joined(separator: "\n")
    }
    let rows = [["PEER", "STATE", "LINK", "UNANSWERED"]]
      + status.links.map { [$0.peer.logSafe, $0.state, $0.kind ?? "-", "\($0.unanswered)"] }
    var widths = [Int](repeating: 0, count: 4)
    for row in rows {
      for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
    }
    for row in rows {
      let cells = row.enumerated().map { column, cell in
        column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
      }
      lines.append(cells.joined(separator: "  "))
    }
    return lines.joined(separator: "\n")
  }
}
