private import Foundation
#if canImport(Glibc)
private import Glibc
#endif

/// A free TCP port on 127.0.0.1 that is likely to stay free until it is bound.
///
/// The port is checked by binding it, then released for the caller's process to bind. A port
/// the kernel picks (bind to port 0) comes from the ephemeral range, which every outgoing
/// connection and every port-0 listener on the machine draws from too: under load another one
/// takes it in the moment between. So a random port below that range (Linux's default starts
/// at 32768) is tried first; only explicit binds compete for those.
package func freePort() throws -> Int {
  for _ in 0 ..< 64 {
    let port = Int.random(in: 20_000 ..< 32_000)
    if let bound = try? bindable(port: port) { return bound }
  }
  return try bindable(port: 0)
}

/// Binds 127.0.0.1:`port` (0: any) and releases it; returns the port bound.
private func bindable(port: Int) throws -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard bound == 0 else { throw NoFreePort() }
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  _ = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
  }
  return Int(UInt16(bigEndian: address.sin_port))
}

/// Not even the kernel had a port to give.
package struct NoFreePort: Error, CustomStringConvertible {
  package var description: String { "no free port on 127.0.0.1" }
}
