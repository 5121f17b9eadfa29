package import Foundation
private import Synchronization

/// Hands the complete lines a child process writes to `deliver`, as they come.
package enum LineReader {
  private final class Partial: Sendable {
    let buffer = Mutex("")
  }

  package static func read(_ handle: FileHandle, _ deliver: @escaping @Sendable ([String]) -> Void) {
    let partial = Partial()
    handle.readabilityHandler = { handle in
      let data = handle.availableData
      if data.isEmpty {
        handle.readabilityHandler = nil
        return
      }
      let lines: [String] = partial.buffer.withLock { buffer in
        buffer += String(decoding: data, as: UTF8.self)
        var parts = buffer.components(separatedBy: "\n")
        buffer = parts.removeLast()
        return parts
      }
      deliver(lines)
    }
  }
}
