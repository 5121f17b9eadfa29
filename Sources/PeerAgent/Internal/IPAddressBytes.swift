#if canImport(Glibc)
private import Glibc
#elseif canImport(Musl)
private import Musl
#elseif canImport(Darwin)
private import Darwin
#endif

/// The bytes of a literal IP address, as certificates store them in IP subject alternative names.
enum IPAddressBytes {
  static func parse(_ text: String) -> [UInt8]? {
    // Plain buffers, not `in_addr()`/`in6_addr()`: with PostgresNIO in the build, their
    // initialisers are visible from two C modules and neither is imported here.
    var v4 = [UInt8](repeating: 0, count: 4)
    if v4.withUnsafeMutableBytes({ inet_pton(AF_INET, text, $0.baseAddress) }) == 1 {
      return v4
    }
    var v6 = [UInt8](repeating: 0, count: 16)
    if v6.withUnsafeMutableBytes({ inet_pton(AF_INET6, text, $0.baseAddress) }) == 1 {
      return v6
    }
    return nil
  }
}
