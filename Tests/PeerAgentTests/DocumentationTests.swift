import Foundation
import Testing

/// The README is the front door and the guides under `docs/` are the rest of the house: every
/// link in them must reach a file of the repository (a user has nothing beside it), and the
/// README stays short enough to read.
@Suite("Documentation")
struct DocumentationTests {
  /// The repository's root, from this file's place in it.
  static let root = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  static var documents: [String] {
    let guides = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("docs").path)) ?? []
    return ["README.md", "certs/README.md"] + guides.filter { $0.hasSuffix(".md") }.sorted().map { "docs/\($0)" }
  }

  /// The targets of `[text](target)` links, without a `#fragment`.
  static func links(in markdown: String) -> [String] {
    let pattern = /\]\(([^)\s]+)\)/
    return markdown.matches(of: pattern).map { String($0.output.1) }
  }

  @Test("Every link in the README and the guides reaches a file inside the repository")
  func linksStayInside() throws {
    let rootPath = Self.root.standardizedFileURL.path
    var problems: [String] = []
    for document in Self.documents {
      let url = Self.root.appendingPathComponent(document)
      let text = try String(contentsOf: url, encoding: .utf8)
      for link in Self.links(in: text) {
        if link.contains("://") || link.hasPrefix("mailto:") {
          problems.append("\(document): \(link) leaves the repository")
          continue
        }
        let path = String(link.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0])
        if path.isEmpty { continue }  // a fragment of the same page
        let target = url.deletingLastPathComponent().appendingPathComponent(path).standardizedFileURL.path
        if !target.hasPrefix(rootPath + "/") {
          problems.append("\(document): \(link) points outside the repository")
        } else if !FileManager.default.fileExists(atPath: target) {
          problems.append("\(document): \(link) does not exist")
        }
      }
    }
    #expect(Self.documents.count > 3, "the guides under docs/ were not found from \(rootPath)")
    #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
  }

  @Test("The README is a front door: the two commands first, at most 300 lines")
  func readmeIsShort() throws {
    let text = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(lines.count <= 300, "README.md has \(lines.count) lines")
    let firstBlock = text.components(separatedBy: "```bash").dropFirst().first ?? ""
    #expect(firstBlock.contains("peer-agent demo") && firstBlock.contains("swift test"))
  }
}
