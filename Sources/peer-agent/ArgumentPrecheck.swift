internal import ArgumentParser
private import Foundation

/// The mistakes ArgumentParser reports only once everything else is right: a command that does
/// not exist (`rn --name hub` said "Unknown option '--name'") and a misspelt flag (`--lsiten`
/// said "single mode needs --listen … or --connect", from a check that ran first). Looked for
/// before parsing, against the command's own description of its arguments, so that the typo is
/// the first thing the user reads, with the nearest name.
enum ArgumentPrecheck {
  /// One command's names: its options (which take a value) and its flags.
  struct Command {
    var options: Set<String> = []
    var flags: Set<String> = []

    var all: Set<String> { self.options.union(self.flags) }
  }

  /// What is wrong with `arguments` (without the program's name), or `nil` when nothing is
  /// found here (ArgumentParser then says what else it finds).
  static func problem(in arguments: [String], of root: any ParsableCommand.Type) -> String? {
    guard let first = arguments.first, !first.hasPrefix("-") else { return nil }
    let commands = Self.commands(of: root)
    guard let command = commands[first] else {
      let visible = commands.keys.filter { $0 != "bench-worker" && $0 != "help" }.sorted()
      let hint = Self.nearest(to: first, in: Set(visible)).map { " (did you mean '\($0)'?)" } ?? ""
      return "unknown command '\(first)'\(hint); the commands are \(visible.joined(separator: ", ")) ('peer-agent --help' says what each does)"
    }
    var index = 1
    while index < arguments.count {
      let token = arguments[index]
      index += 1
      if token == "--" { break }
      guard token.hasPrefix("-"), token.count > 1, Double(token) == nil else { continue }
      let name = String(token.split(separator: "=", maxSplits: 1)[0])
      if command.options.contains(name) {
        if !token.contains("=") { index += 1 }  // its value, whatever it looks like
        continue
      }
      if command.flags.contains(name) { continue }
      let hint = Self.nearest(to: name, in: command.all).map { " (did you mean '\($0)'?)" } ?? ""
      return "unknown option '\(name)' for '\(first)'\(hint); 'peer-agent \(first) --help' lists them"
    }
    return nil
  }

  /// Each subcommand's names, from ArgumentParser's own description of the tool.
  static func commands(of root: any ParsableCommand.Type) -> [String: Command] {
    guard let data = root._dumpHelp().data(using: .utf8),
      let tool = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let top = tool["command"] as? [String: Any],
      let subcommands = top["subcommands"] as? [[String: Any]]
    else { return [:] }
    var commands: [String: Command] = [:]
    for subcommand in subcommands {
      guard let name = subcommand["commandName"] as? String else { continue }
      var command = Command()
      for argument in subcommand["arguments"] as? [[String: Any]] ?? [] {
        let names = (argument["names"] as? [[String: Any]] ?? []).compactMap { entry -> String? in
          guard let kind = entry["kind"] as? String, let name = entry["name"] as? String else { return nil }
          return kind == "long" ? "--\(name)" : "-\(name)"
        }
        if argument["kind"] as? String == "option" {
          command.options.formUnion(names)
        } else {
          command.flags.formUnion(names)
        }
      }
      commands[name] = command
    }
    return commands
  }

  /// The name closest to `text`, if one is close enough to be what was meant (an edit or two,
  /// or a third for long names).
  static func nearest(to text: String, in names: Set<String>) -> String? {
    var best: (name: String, distance: Int)?
    for name in names.sorted() {
      let distance = Self.distance(text, name)
      if best == nil || distance < best!.distance { best = (name, distance) }
    }
    guard let best, best.distance <= max(2, text.count / 4) else { return nil }
    return best.name
  }

  /// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
  /// neighbours (`lsiten` → `listen` is one).
  static func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0 ... a.count { table[i][0] = i }
    for j in 0 ... b.count { table[0][j] = j }
    for i in 1 ... a.count {
      for j in 1 ... b.count {
        let cost = a[i - 1] == b[j - 1] ? 0 : 1
        table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
        if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
          table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
        }
      }
    }
    return table[a.count][b.count]
  }
}
