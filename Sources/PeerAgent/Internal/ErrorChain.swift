internal import GRPCCore
internal import NIOCore
#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// What went wrong at the bottom of an error's chain of causes, in words for a user: the
/// transport wraps the reason a connection failed (a refused port, a TLS alert) several
/// layers deep.
package enum ErrorChain {
  /// The root cause of `error`: the last cause of its `RPCError`/`RuntimeError`/
  /// ``PeerAgentError`` chain, an `IOError` as its system message (`connection refused`).
  package static func rootCause(_ error: any Error) -> String {
    var current: any Error = error
    while true {
      if let rpc = current as? RPCError, let cause = rpc.cause {
        current = cause
      } else if let runtime = current as? RuntimeError, let cause = runtime.cause {
        current = cause
      } else if let peer = current as? PeerAgentError, let cause = peer.cause {
        current = cause
      } else if let io = current as? IOError {
        return String(cString: strerror(io.errnoCode)).lowercased()
      } else {
        return "\(current)"
      }
    }
  }
}
