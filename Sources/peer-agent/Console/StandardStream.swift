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
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { buffer in
      var offset = 0
      while offset < buffer.count {
        let written = systemWrite(self.rawValue, buffer.baseAddress! + offset, buffer.count - offset)
        if written > 0 {
          offset += written
        } else if written < 0 && errno == EINTR {
          continue
        } else {
          return  // EPIPE, a closed descriptor, a full disk: nothing more to do with it
        }
      }
    }
  }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif
