/// Where PEM-encoded material comes from: a file, or the text itself.
public struct PEMSource: Sendable, Hashable, CustomStringConvertible {
  enum Wrapped: Sendable, Hashable {
    case file(String)
    case text(String)
  }

  let wrapped: Wrapped

  /// PEM read from the file at `path` when the peer is created.
  public static func file(_ path: String) -> Self { Self(wrapped: .file(path)) }

  /// PEM given directly (tests, or material from a secret store).
  public static func pem(_ text: String) -> Self { Self(wrapped: .text(text)) }

  /// Where the PEM comes from: the file's path, or `<PEM text>`.
  public var description: String {
    switch self.wrapped {
    case .file(let path): return path
    case .text: return "<PEM text>"
    }
  }
}
