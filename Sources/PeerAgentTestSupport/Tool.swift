internal import Foundation

/// A command-line tool the tests use as an oracle or a client (`openssl`, a shell pipeline),
/// run to completion.
package enum Tool {
  /// Runs `executable` with `arguments`, writing `input` to its standard input; returns its
  /// exit status and what it printed (standard output and error together).
  package static func run(_ executable: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try stdin.fileHandleForWriting.close()
    let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, printed)
  }

  /// Runs `command` with `/bin/sh -c`.
  package static func shell(_ command: String) throws -> (status: Int32, output: String) {
    try Self.run("/bin/sh", ["-c", command])
  }
}
