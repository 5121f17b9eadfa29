private import Foundation
internal import NIOSSL
internal import PeerAgent
internal import PostgresNIO

/// The TLS of a hub's connections to the cluster database, from PostgreSQL's `sslmode` and
/// `sslrootcert` (``Peer/Config/Cluster/Database``), and the plain words for its failures.
struct ClusterTLS {
  let database: Peer.Config.Cluster.Database
  /// For the pool.
  let client: PostgresClient.Configuration.TLS
  /// For the first connection, which says at once what is wrong.
  let connection: PostgresConnection.Configuration.TLS

  /// - Throws: ``PeerAgentError`` (`invalidConfiguration`) when `sslrootcert` cannot be read.
  init(_ database: Peer.Config.Cluster.Database) throws {
    self.database = database
    var tls = TLSConfiguration.makeClientConfiguration()
    switch database.sslMode ?? .disable {
    case .disable:
      self.client = .disable
      self.connection = .disable
      return
    case .require:
      tls.certificateVerification = .none
    case .verifyCA, .verifyFull:
      guard let file = database.sslRootCertificate else {
        throw PeerAgentError(code: .invalidConfiguration, message: "sslmode=\(database.sslMode!.rawValue) needs sslrootcert=FILE")
      }
      do {
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
      } catch {
        throw PeerAgentError(
          code: .invalidConfiguration,
          message: "cannot read sslrootcert \(file) (the CA of the cluster database's certificate): \(error)",
          cause: error
        )
      }
      // verify-full: the name (or, for an IP address, the address) dialed must be the
      // certificate's; postgres-nio gives NIOSSL the host as the name unless it is an address.
      tls.certificateVerification = database.sslMode == .verifyFull ? .fullVerification : .noHostnameVerification
    }
    self.client = .require(tls)
    self.connection = try .require(NIOSSLContext(configuration: tls))
  }

  /// What a TLS failure means, in words an operator acts on; `nil` for other errors.
  func explain(_ error: any Error) -> String? {
    let mode = self.database.sslMode?.rawValue ?? "disable"
    var current: (any Error)? = error
    var seen = 0
    while let error = current, seen < 8 {
      seen += 1
      if let error = error as? PSQLError {
        if error.code == .sslUnsupported {
          return "the database server does not offer TLS (sslmode=\(mode)): turn on ssl in postgresql.conf, or write sslmode=disable"
        }
        current = error.underlying
        continue
      }
      if let error = error as? NIOSSLExtraError, "\(error)".contains("hostname") || "\(error)".contains("Hostname") {
        return "the database server's certificate is not for '\(self.database.host)' (sslmode=verify-full checks the name dialed)"
      }
      if let error = error as? NIOSSLError {
        if case .handshakeFailed = error {
          let root = self.database.sslRootCertificate.map { " \($0)" } ?? ""
          // BoringSSL's own text is a dump of its error queue, with source paths: not for users.
          return "the database server's certificate was refused: it does not chain to sslrootcert\(root), or is not valid now (sslmode=\(mode))"
        }
        return "TLS to the database failed (sslmode=\(mode)): \(error)"
      }
      break
    }
    return nil
  }
}
