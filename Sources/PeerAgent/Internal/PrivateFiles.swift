private import Foundation
#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// Files and folders only their owner may read: private keys, the state folder and its
/// database. Each is created with its mode from the first byte — never written readable and
/// narrowed afterwards, which leaves a moment when others can read it.
enum PrivateFiles {
  /// Creates the folder `path` (and missing parents) readable by the owner only (0700). An
  /// existing folder keeps its mode.
  static func makeFolder(_ path: String) throws {
    try FileManager.default.createDirectory(
      atPath: path,
      withIntermediateDirectories: true,
      attributes: [.posixPermissions: 0o700]
    )
  }

  /// Writes `contents` to a new file at `path` created with `mode` (`O_CREAT | O_EXCL`); an
  /// existing file at `path` is removed first.
  static func write(_ contents: String, to path: String, mode: Int) throws {
    if unlink(path) != 0 && errno != ENOENT { throw Self.failure("cannot replace", path) }
    let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(mode))
    guard descriptor >= 0 else { throw Self.failure("cannot create", path) }
    defer { _ = close(descriptor) }
    var bytes = Array(contents.utf8)[...]
    while !bytes.isEmpty {
      let written = bytes.withUnsafeBytes { systemWrite(descriptor, $0.baseAddress, $0.count) }
      if written < 0 {
        if errno == EINTR { continue }
        throw Self.failure("cannot write", path)
      }
      bytes = bytes.dropFirst(written)
    }
  }

  /// Creates an empty file at `path` with `mode`, unless it exists (it keeps its mode).
  static func create(_ path: String, mode: Int) throws {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(mode))
    if descriptor >= 0 {
      _ = close(descriptor)
    } else if errno != EEXIST {
      throw Self.failure("cannot create", path)
    }
  }

  private static func failure(_ what: String, _ path: String) -> PeerAgentError {
    PeerAgentError(code: .invalidConfiguration, message: "\(what) \(path): \(String(cString: strerror(errno)))")
  }
}

/// `write(2)`, by a name that ``PrivateFiles/write(_:to:mode:)`` does not shadow.
private func systemWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
  write(descriptor, buffer, count)
}
