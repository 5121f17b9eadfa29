internal import ArgumentParser
private import Foundation
internal import PeerAgent
internal import PeerAgentBench

@main
struct PeerAgentCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "peer-agent",
    abstract: "Two gRPC peers that call each other, in either direction, over mutual TLS.",
    discussion: """
      Start with `peer-agent demo`. Make development certificates with `peer-agent certs`, \
      then start two peers with `peer-agent run` (single-channel: one listens, one dials; \
      dual-channel: both listen and both dial).
      """,
    version: PeerAgentVersion.current,
    subcommands: [Run.self, Status.self, Health.self, Certs.self, Demo.self, Bench.self, BenchWorker.self]
  )

  /// Runs the command and turns every error into one line on standard error and a non-zero
  /// exit, never a trap or a stack trace.
  static func main() async {
    // A wrong command or a misspelt flag first: ArgumentParser would report it only after
    // whatever else it finds.
    if let problem = ArgumentPrecheck.problem(in: Array(CommandLine.arguments.dropFirst()), of: Self.self) {
      Self.printError(problem)
      Foundation.exit(64)
    }
    do {
      var command = try Self.parseAsRoot()
      if var asyncCommand = command as? any AsyncParsableCommand {
        try await asyncCommand.run()
      } else {
        try command.run()
      }
    } catch let error as PeerAgentError {
      Self.printError(error.message)
      Foundation.exit(1)
    } catch let error as BenchFailure {
      Self.printError(error.message)
      Foundation.exit(1)
    } catch let error as CommandFailure {
      Self.printError(error.message)
      Foundation.exit(error.exitCode)
    } catch {
      Self.exit(withError: error)
    }
  }

  static func printError(_ message: String) {
    FileHandle.standardError.write(Data("peer-agent: error: \(message)\n".utf8))
  }
}

/// A failure the command reports as one line, with an exit code.
struct CommandFailure: Error {
  var message: String
  var exitCode: Int32 = 1
}
