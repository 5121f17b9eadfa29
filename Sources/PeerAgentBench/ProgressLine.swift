private import Foundation

/// One progress line on standard error.
final class ProgressLine: Sendable {
  func show(_ text: String) {
    FileHandle.standardError.write(Data("  … \(text)\r".utf8))
  }

  func finished(_ text: String) {
    FileHandle.standardError.write(Data("\u{1B}[2K  ✓ \(text)\n".utf8))
  }
}
