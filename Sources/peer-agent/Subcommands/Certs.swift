internal import ArgumentParser
private import Foundation
internal import PeerAgent

struct Certs: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Make a development CA and certificates; export one host's files; revoke; print key fingerprints.",
    discussion: """
      peer-agent certs --out DIR --names hub,edge [--force]
        Writes DIR/ca.pem and DIR/ca-key.pem (reused when they exist, so peers added later \
      chain to the same CA), and for each name DIR/NAME.pem and DIR/NAME-key.pem. Keys are \
      created readable by the owner only, and an existing key is never overwritten without \
      --force. Each certificate is valid for listening and dialing, with the subject \
      alternative names NAME, localhost, 127.0.0.1 and ::1.

      peer-agent certs --from DIR --export NAME --out DEST [--force]
        Copies what the host of NAME needs — ca.pem, NAME.pem, NAME-key.pem, never the CA's \
      key — into DEST.

      peer-agent certs --from DIR --revoke NAMES
        Adds the certificates of NAMES to DIR/revoked.pem, a revocation list signed by the CA, \
      for `peer-agent run --revoked DIR/revoked.pem` (send the peers SIGHUP to re-read it).

      peer-agent certs --from DIR --fingerprint NAMES
        Prints NAME=sha256:KEY for each name: the entries of an allowlist that pins keys \
      (`peer-agent run --allow`).

      FOR DEVELOPMENT ONLY: anyone who can read ca-key.pem can mint identities. See \
      certs/README.md to bring your own CA.
      """
  )

  @Option(name: .long, help: ArgumentHelp("Directory to write to (created if missing, owner-only).", valueName: "DIR"))
  var out: String?

  @Option(name: .long, help: ArgumentHelp("Comma-separated peer names to issue, e.g. hub,edge.", valueName: "NAMES"))
  var names: String?

  @Flag(name: .long, help: "Replace existing certificates and keys (new keys: peers pinned to the old ones must be updated).")
  var force = false

  @Option(name: .long, help: ArgumentHelp("The certificate folder to export from, revoke in, or fingerprint.", valueName: "DIR"))
  var from: String?

  @Option(name: .long, help: ArgumentHelp("With --from and --out: the peer whose files to copy.", valueName: "NAME"))
  var export: String?

  @Option(name: .long, help: ArgumentHelp("With --from: comma-separated names whose certificates to revoke.", valueName: "NAMES"))
  var revoke: String?

  @Option(name: .long, help: ArgumentHelp("With --from: comma-separated names whose key fingerprints to print.", valueName: "NAMES"))
  var fingerprint: String?

  private static func list(_ text: String?) -> [String] {
    (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  }

  func validate() throws {
    let actions = [self.names != nil, self.export != nil, self.revoke != nil, self.fingerprint != nil].filter { $0 }.count
    guard actions == 1 else {
      throw ValidationError("give one of --names (issue), --export, --revoke or --fingerprint")
    }
    if self.names != nil {
      guard self.out != nil else { throw ValidationError("--names needs --out DIR: where to write") }
      guard self.from == nil else { throw ValidationError("--names writes into --out; --from goes with --export, --revoke and --fingerprint") }
      let names = Self.list(self.names)
      guard !names.isEmpty else {
        throw ValidationError("--names needs at least one name, e.g. --names hub,edge")
      }
      for name in names where !DevelopmentCertificates.isValidName(name) {
        throw ValidationError("'\(name.logSafe)' is not a usable peer name: use letters, digits, '-' and '.'")
      }
      if Set(names).count != names.count {
        throw ValidationError("--names lists a name twice")
      }
      if names.contains("ca") || names.contains("revoked") || names.contains(where: { $0.hasSuffix("-key") }) {
        throw ValidationError("'ca', 'revoked' and names ending in '-key' would overwrite the CA's files")
      }
      return
    }
    guard self.from != nil else { throw ValidationError("--export, --revoke and --fingerprint need --from DIR") }
    if self.export != nil {
      guard self.out != nil else { throw ValidationError("--export needs --out DEST: where to copy to") }
    } else if self.out != nil {
      throw ValidationError("--out goes with --names or --export")
    }
    if self.force && self.revoke != nil || self.force && self.fingerprint != nil {
      throw ValidationError("--force goes with --names or --export")
    }
    for name in Self.list(self.export ?? self.revoke ?? self.fingerprint) where !DevelopmentCertificates.isValidName(name) {
      throw ValidationError("'\(name.logSafe)' is not a peer name")
    }
    if Self.list(self.export ?? self.revoke ?? self.fingerprint).isEmpty {
      throw ValidationError("name at least one peer")
    }
  }

  func run() throws {
    do {
      if let from = self.from, let name = self.export, let out = self.out {
        for path in try DevelopmentCertificates.export(name: name, from: from, to: out, force: self.force) {
          print("wrote \(path)")
        }
      } else if let from = self.from, self.revoke != nil {
        let path = try DevelopmentCertificates.revoke(names: Self.list(self.revoke), in: from)
        print("wrote \(path)")
        FileHandle.standardError.write(Data("note: run peers with --revoked \(path), and send running ones SIGHUP to re-read it.\n".utf8))
      } else if let from = self.from, self.fingerprint != nil {
        let folder = CertificateDirectory(from)
        for name in Self.list(self.fingerprint) {
          print("\(name)=\(try folder.keyFingerprint(for: name))")
        }
      } else if let out = self.out {
        for path in try DevelopmentCertificates.write(names: Self.list(self.names), to: out, force: self.force) {
          print("wrote \(path)")
        }
        FileHandle.standardError.write(
          Data(
            """
            note: these certificates are for development only; keep \(out)/ca-key.pem private \
            and use your own CA in production (certs/README.md).

            """.utf8
          )
        )
      }
    } catch let error as PeerAgentError {
      throw error
    } catch {
      throw CommandFailure(message: "\(error)")
    }
  }
}
