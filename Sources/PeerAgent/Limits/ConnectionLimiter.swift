internal import NIOCore
private import Synchronization

/// The listener's connections, counted in all and per IP address, so that no remote can take
/// every descriptor.
///
/// A connection is *established* once it opened its first stream (a peer's dialer does at
/// once). At a cap, a new connection takes the place of the oldest one not established yet —
/// a handshake never finished, a connection never used, both likely an attack — and is refused
/// only when every connection counted is established.
final class ConnectionLimiter: Sendable {
  /// One admitted connection.
  struct Ticket: Sendable, Hashable {
    fileprivate let id: Int
    fileprivate let address: String
  }

  /// The answer to a new connection.
  enum Admission: Sendable {
    /// Admitted; `evicted`, if any, made room and is to be closed.
    case admitted(Ticket, evicted: (any Channel)?)
    /// Refused, for this reason.
    case refused(String)
  }

  private struct Entry {
    let address: String
    let channel: any Channel
    var established = false
  }

  private struct State {
    var entries: [Int: Entry] = [:]
    var perAddress: [String: Int] = [:]
    var nextID = 0

    /// The oldest connection not established, from `address` if given.
    func oldestPending(from address: String?) -> Int? {
      self.entries.lazy
        .filter { !$0.value.established && (address == nil || $0.value.address == address) }
        .map(\.key)
        .min()
    }

    mutating func remove(_ id: Int) -> Entry? {
      guard let entry = self.entries.removeValue(forKey: id) else { return nil }
      let left = (self.perAddress[entry.address] ?? 1) - 1
      self.perAddress[entry.address] = left > 0 ? left : nil
      return entry
    }
  }

  private let state = Mutex(State())
  let maximum: Int
  let maximumPerAddress: Int

  init(maximum: Int, maximumPerAddress: Int) {
    self.maximum = max(1, maximum)
    self.maximumPerAddress = max(1, maximumPerAddress)
  }

  /// Connections held now.
  var count: Int { self.state.withLock { $0.entries.count } }

  /// Admits a connection from `address` (its IP, without the port), making room if it can.
  func admit(_ channel: any Channel, from address: String) -> Admission {
    self.state.withLock { state in
      var evicted: (any Channel)?
      if (state.perAddress[address] ?? 0) >= self.maximumPerAddress {
        guard let oldest = state.oldestPending(from: address) else {
          return .refused(
            "\(self.maximumPerAddress) connections from \(address) are open and in use (the limit per address)"
          )
        }
        evicted = state.remove(oldest)?.channel
      } else if state.entries.count >= self.maximum {
        guard let oldest = state.oldestPending(from: nil) else {
          return .refused("\(self.maximum) connections are open and in use (the listener's limit)")
        }
        evicted = state.remove(oldest)?.channel
      }
      state.nextID += 1
      state.entries[state.nextID] = Entry(address: address, channel: channel)
      state.perAddress[address, default: 0] += 1
      return .admitted(Ticket(id: state.nextID, address: address), evicted: evicted)
    }
  }

  /// The connection opened its first stream: it is no longer replaced to make room.
  func established(_ ticket: Ticket) {
    self.state.withLock { $0.entries[ticket.id]?.established = true }
  }

  /// The connection closed.
  func release(_ ticket: Ticket) {
    _ = self.state.withLock { $0.remove(ticket.id) }
  }
}
