#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// Standard output or standard error, written with `write(2)`.
///
/// Foundation's `FileHandle.write(_:)` traps when the other end has gone (a pipe whose reader
/// exited: `EPIPE`), which took the whole peer down with every link it held. Here a failed
/// write is dropped: nobody is reading it, and the peer goes on.
enum StandardStream: Int32 {
  case output = 1
  case error = 2

  func write(_ text: String) {
    writeAll(self.rawValue, Array(text.utf8))
  }
}

/// Writes all of `bytes` to `descriptor`, giving up at the first error: EPIPE (the reader went
/// away), a closed descriptor, a full disk — nothing more is to be done with it.
func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) {
  bytes.withUnsafeBytes { buffer in
    var offset = 0
    while offset < buffer.count {
      let written = systemWrite(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
      if written > 0 {
        offset += written
      } else if written < 0 && errno == EINTR {
        continue
      } else {
        return
      }
    }
  }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif
