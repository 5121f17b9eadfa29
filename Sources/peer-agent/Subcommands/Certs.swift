internal import ArgumentParser
private import Foundation
internal import PeerAgent

struct Certs: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Make a development CA and a certificate and key for each peer name.",
    discussion: """
      Writes DIR/ca.pem and DIR/ca-key.pem (reused when they exist, so peers added later \
      chain to the same CA), and for each name DIR/NAME.pem and DIR/NAME-key.pem. Keys are \
      readable by the owner only. Each certificate is valid for listening and dialing, with \
      the subject alternative names NAME, localhost, 127.0.0.1 and ::1.

      FOR DEVELOPMENT ONLY: anyone who can read ca-key.pem can mint identities. See \
      certs/README.md to bring your own CA.
      """
  )

  @Option(name: .long, help: ArgumentHelp("Directory to write the files to (created if missing).", valueName: "DIR"))
  var out: String

  @Option(
    name: .long,
    help: ArgumentHelp("Comma-separated peer names, e.g. hub,edge.", valueName: "NAMES")
  )
  var names: String

  var nameList: [String] {
    self.names.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
  }

  func validate() throws {
    let names = self.nameList
    guard !names.isEmpty else {
      throw ValidationError("--names needs at least one name, e.g. --names hub,edge")
    }
    for name in names where !DevelopmentCertificates.isValidName(name) {
      throw ValidationError("'\(name)' is not a usable peer name: use letters, digits, '-' and '.'")
    }
    if Set(names).count != names.count {
      throw ValidationError("--names lists a name twice")
    }
    if names.contains("ca") || names.contains(where: { $0.hasSuffix("-key") }) {
      throw ValidationError("'ca' and names ending in '-key' would overwrite the CA's files")
    }
  }

  func run() throws {
    let written: [String]
    do {
      written = try DevelopmentCertificates.write(names: self.nameList, to: self.out)
    } catch let error as PeerAgentError {
      throw error
    } catch {
      throw CommandFailure(message: "cannot write certificates to \(self.out): \(error)")
    }
    for path in written {
      print("wrote \(path)")
    }
    FileHandle.standardError.write(
      Data(
        """
        note: these certificates are for development only; keep \(self.out)/ca-key.pem private \
        and use your own CA in production (certs/README.md).

        """.utf8
      )
    )
  }
}
