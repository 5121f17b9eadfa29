/// The remote identities a peer serves and talks to, each optionally pinned to one key.
///
/// Written as `NAME[=sha256:KEY]` entries, separated by commas or newlines (`#` starts a
/// comment): `edge-1,edge-2=sha256:9f86d0…`. A peer with an allowlist refuses every other
/// identity, and a listed identity presenting another key than its pin.
public struct Allowlist: Sendable, Hashable {
  /// The allowed identities, each with the key it must present (`nil`: any key of the CA).
  public var entries: [String: KeyFingerprint?]

  /// An allowlist of `entries`.
  public init(_ entries: [String: KeyFingerprint?]) {
    self.entries = entries
  }

  /// Why an allowlist was not read.
  public struct Failure: Error, Hashable, Sendable, CustomStringConvertible {
    /// Why, in words for the user.
    public var description: String
    init(_ description: String) { self.description = description }
  }

  /// Parses `NAME[=sha256:KEY]` entries separated by commas or newlines; `#` starts a comment.
  public init(parsing text: String) throws(Failure) {
    var entries: [String: KeyFingerprint?] = [:]
    for rawLine in text.split(whereSeparator: \.isNewline) {
      let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
      for rawEntry in line.split(separator: ",") {
        let entry = rawEntry.trimmingCharacters(in: .whitespaces)
        if entry.isEmpty { continue }
        let parts = entry.split(separator: "=", maxSplits: 1).map { String($0) }
        let name = parts[0].trimmingCharacters(in: .whitespaces)
        // ASCII only, compared byte for byte: Swift's `==` would take `café` (NFC) and
        // `cafe\u{301}` (NFD) for one name. Certificates carry DNS names in ASCII (an
        // internationalized name as its A-label, `xn--…`).
        guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0" ... "9").contains($0) || "-_.".unicodeScalars.contains($0)) }) else {
          throw Failure(
            "'\(entry.logSafe)' is not NAME or NAME=sha256:KEY (a name has ASCII letters, digits, '-', '_' and '.'; write an internationalized name as its A-label, xn--…)"
          )
        }
        var pin: KeyFingerprint?
        if parts.count == 2 {
          guard let fingerprint = KeyFingerprint(parsing: parts[1].trimmingCharacters(in: .whitespaces)) else {
            throw Failure("the key of '\(name)' is not sha256:HEX (64 hex digits) or sha256:BASE64")
          }
          pin = fingerprint
        }
        if let existing = entries[name], existing != pin {
          throw Failure("'\(name)' is listed twice with different keys")
        }
        entries[name] = pin
      }
    }
    guard !entries.isEmpty else { throw Failure("the allowlist names no peer") }
    self.entries = entries
  }

  /// Why `name` presenting `key` is refused, or `nil` when it is allowed.
  public func refusal(of name: String, key: KeyFingerprint) -> String? {
    guard let pin = self.entries[name] else {
      return "peer '\(name.logSafe)' is not on the allowlist"
    }
    if let pin, pin != key {
      return "peer '\(name.logSafe)' presented key \(key), but the allowlist pins \(pin)"
    }
    return nil
  }
}

private import Foundation
