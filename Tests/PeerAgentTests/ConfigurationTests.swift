import ArgumentParser
import Foundation
import Testing

@testable import PeerAgent
@testable import peer_agent

@Suite("Addresses, options and configuration errors")
struct ConfigurationTests {
  @Test(
    "Addresses parse",
    arguments: [
      ("127.0.0.1:7000", "127.0.0.1", 7000),
      ("localhost:0", "localhost", 0),
      ("[::1]:65535", "::1", 65535),
      ("hub.example.com:443", "hub.example.com", 443),
    ]
  )
  func parsesAddresses(text: String, host: String, port: Int) throws {
    let address = try PeerAddress(parsing: text)
    #expect(address.host == host)
    #expect(address.port == port)
  }

  @Test(
    "Bad addresses are refused with the reason",
    arguments: [
      ("127.0.0.1", "missing ':PORT'"),
      (":7000", "missing host"),
      ("127.0.0.1:99999", "is not a port number"),
      ("::1:7000", "in brackets"),
      ("[::1:7000", "missing ']'"),
    ]
  )
  func refusesBadAddresses(text: String, reason: String) {
    #expect {
      try PeerAddress(parsing: text)
    } throws: { error in
      (error as? PeerAgentError)?.message.contains(reason) == true
    }
  }

  @Test("A target may pin the identity it expects")
  func parsesTargets() throws {
    let pinned = try Peer.Target(parsing: "hub@127.0.0.1:7000")
    #expect(pinned.expectedIdentity == "hub")
    #expect(pinned.address == PeerAddress(host: "127.0.0.1", port: 7000))
    #expect(try Peer.Target(parsing: "127.0.0.1:7000").expectedIdentity == nil)
  }

  @Test("The defaults are what the documentation says")
  func defaults() {
    let config = Peer.Config.defaults(mode: .single)
    #expect(config.requests.timeout == .seconds(30))
    #expect(config.shutdown.gracePeriod == .seconds(5))
    #expect(
      config.reconnect
        == .init(
          initialBackoff: .milliseconds(100),
          maximumBackoff: .seconds(5),
          multiplier: 2,
          jitter: 0.5,
          connectTimeout: .seconds(10)
        )
    )
    #expect(
      config.delivery
        == .init(storage: .inMemory, maximumInFlight: 1024, replyRetention: .seconds(3600), replyCapacity: 1_000_000)
    )
    #expect(
      config.health
        == .init(
          heartbeatInterval: .seconds(2),
          heartbeatTimeout: .seconds(6),
          keepaliveInterval: .seconds(10),
          keepaliveTimeout: .seconds(5)
        )
    )
    #expect(!config.security.isMutualTLS)
    #expect(config.transport.flushCoalescing == .init(maximumDelay: .zero, maximumBytes: 65536))
  }

  @Test("Backoff grows, is capped, and is jittered downwards")
  func backoff() {
    let reconnect = Peer.Config.Reconnect.defaults
    for attempt in 0 ..< 20 {
      let delay = reconnect.delay(attempt: attempt)
      #expect(delay <= .seconds(5))
      #expect(delay >= .milliseconds(Int64(min(5000, 100 * (1 << min(attempt, 10))) * 5 / 10)))
    }
  }

  @Test(
    "peer-agent run refuses bad option sets with a clear message",
    arguments: [
      (["run", "--name", "hub", "--mode", "single", "--insecure"], "needs --listen"),
      (["run", "--name", "hub", "--mode", "dual", "--listen", "127.0.0.1:0", "--insecure"], "both --listen and --connect"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0"], "mutual TLS needs --certs"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "x", "--insecure"], "--insecure turns TLS off"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "nope", "--insecure"], "--listen: invalid address"),
      (["run", "--name", "hub", "--mode", "triple", "--listen", "127.0.0.1:0", "--insecure"], "triple"),
      (["run", "--name", "h u b", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure"], "not a usable peer name"),
      (["run", "--name", "hub", "--mode", "single", "--connect", "@127.0.0.1:1", "--insecure"], "invalid peer name"),
      (["certs", "--out", "x", "--names", ","], "at least one name"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--allow", "edge"], "need mutual TLS"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "x", "--allow", "ed ge"], "--allow: 'ed ge' is not NAME"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "x", "--allow", "edge=sha256:00"], "is not sha256:HEX"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "x", "--allow", ""], "names no peer"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "x", "--allow", "@f", "--allow", "edge"], "give it once"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "x", "--allow", "edge", "--allow-file", "f"], "not both"),
      (["run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--certs", "x", "--expiry-warning", "1e300"], "from 0 to 36500"),
      (["certs", "--names", "hub"], "--names needs --out"),
      (["certs", "--out", "x", "--names", "hub", "--revoke", "edge"], "give one of"),
      (["certs", "--export", "edge", "--out", "y"], "need --from"),
      (["certs", "--from", "x", "--export", "edge"], "--export needs --out"),
      (["certs", "--from", "x", "--revoke", "edge", "--force"], "--force goes with"),
      (["certs", "--from", "x", "--fingerprint", "a\nb"], "is not a peer name"),
      (["certs", "--out", "x", "--names", "revoked"], "would overwrite the CA's files"),
    ]
  )
  func refusesBadOptions(arguments: [String], message: String) {
    do {
      _ = try PeerAgentCommand.parseAsRoot(arguments)
      Issue.record("\(arguments) parsed")
    } catch {
      let text = PeerAgentCommand.message(for: error)
      #expect(text.contains(message), "\(text)")
      #expect(!text.contains("\n"), "one line: \(text)")
    }
  }

  @Test("--insecure listens on loopback only, unless --insecure-any-address says otherwise")
  func insecureLoopbackOnly() throws {
    let base = ["run", "--name", "hub", "--mode", "single", "--insecure"]
    for address in ["0.0.0.0:7000", "[::]:7000", "192.168.1.5:7000", "hub.example.com:7000"] {
      do {
        _ = try PeerAgentCommand.parseAsRoot(base + ["--listen", address])
        Issue.record("\(address) parsed")
      } catch {
        let text = PeerAgentCommand.message(for: error)
        #expect(text.contains("--insecure listens on loopback only"), "\(text)")
        #expect(text.contains("--insecure-any-address"), "\(text)")
      }
    }
    for address in ["127.0.0.1:7000", "127.1.2.3:7000", "[::1]:7000", "localhost:7000"] {
      _ = try PeerAgentCommand.parseAsRoot(base + ["--listen", address])
    }
    _ = try PeerAgentCommand.parseAsRoot(base + ["--listen", "0.0.0.0:7000", "--insecure-any-address"])
    #expect(throws: (any Error).self) {
      _ = try PeerAgentCommand.parseAsRoot(
        ["run", "--name", "hub", "--mode", "single", "--listen", "0.0.0.0:7000", "--certs", "x", "--insecure-any-address"]
      )
    }
  }

  @Test("--certs DIR maps to DIR/ca.pem, DIR/NAME.pem and DIR/NAME-key.pem")
  func certsDirectory() throws {
    let command = try PeerAgentCommand.parseAsRoot(
      ["run", "--name", "edge", "--mode", "single", "--connect", "hub@127.0.0.1:7000", "--certs", "/c"]
    )
    let run = try #require(command as? Run)
    let config = try run.options.makeConfig()
    #expect(
      config.security
        == .mutualTLS(trustRoots: .file("/c/ca.pem"), certificateChain: .file("/c/edge.pem"), privateKey: .file("/c/edge-key.pem"))
    )
    #expect(config.connect == [Peer.Target(address: PeerAddress(host: "127.0.0.1", port: 7000), expectedIdentity: "hub")])
  }

  @Test("Missing, malformed and mismatched TLS files are refused when the peer is made")
  func refusesBadTLSFiles() throws {
    let certificates = try TestCertificates()
    let hub = try certificates.authority.issue(name: "hub")
    let edge = try certificates.authority.issue(name: "edge")
    let ca = PEMSource.pem(certificates.authority.authority.certificatePEM)
    let cases: [(Peer.Config.Security, String)] = [
      (.mutualTLS(trustRoots: .file("/nonexistent/ca.pem"), certificateChain: .pem(hub.certificatePEM), privateKey: .pem(hub.privateKeyPEM)), "CA certificate file not found: /nonexistent/ca.pem"),
      (.mutualTLS(trustRoots: .pem("not a certificate"), certificateChain: .pem(hub.certificatePEM), privateKey: .pem(hub.privateKeyPEM)), "is not a PEM certificate"),
      (.mutualTLS(trustRoots: ca, certificateChain: .pem(hub.certificatePEM), privateKey: .pem("garbage")), "is not a PEM private key"),
      (.mutualTLS(trustRoots: ca, certificateChain: .pem(hub.certificatePEM), privateKey: .pem(edge.privateKeyPEM)), "does not belong to the certificate"),
    ]
    for (security, message) in cases {
      #expect {
        _ = try Peer(config: .defaults(mode: .single) { $0.security = security }) { _ in "" }
      } throws: { error in
        let text = (error as? PeerAgentError)?.message ?? "\(error)"
        return text.contains(message)
      }
    }
  }

  @Test("A cluster URL's password is never echoed, even from a malformed URL; --cluster-password-file gives it out of ps")
  func clusterPasswordRedacted() async throws {
    for url in [
      "postgresql://user:SECRET-PW", "postgres//user:SECRET-PW@host/db", "postgresql://user:SECRET-PW@host:notaport/db",
      "postgresql://user:SECRET-PW@host", "mysql://user:SECRET-PW@host/db",
    ] {
      #expect(throws: PeerAgentError.self) { try Peer.Config.Cluster.Database(parsing: url) }
      do {
        _ = try Peer.Config.Cluster.Database(parsing: url)
      } catch {
        #expect(!"\(error)".contains("SECRET-PW"), "\(url): \(error)")
      }
      #expect(Peer.Config.Cluster.Database.carriesPassword(url), "\(url)")
    }
    #expect(!Peer.Config.Cluster.Database.carriesPassword("postgresql://user@host:5432/db"))
    let run = try await PeerProcess.runToCompletion([
      "run", "--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0", "--insecure", "--cluster", "postgresql://user:SECRET-PW@host:x/db",
    ])
    #expect(run.status != 0 && !run.error.contains("SECRET-PW") && run.error.contains("--cluster"), "\(run.error)")
  }
}
