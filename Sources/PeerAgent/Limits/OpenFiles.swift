#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// The process's open-files limit (`RLIMIT_NOFILE`): every connection takes a descriptor.
public enum OpenFiles {
  /// Descriptors kept for everything but accepted connections: the listener, the store, logs,
  /// outbound links.
  static let reserve = 64

  /// The soft limit now, if it can be read.
  public static var softLimit: Int? {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
    return Int(clamping: limit.rlim_cur)
  }

  /// Raises the soft limit to the hard limit. Returns the limits before and after, or `nil`
  /// when they cannot be read.
  @discardableResult
  public static func raiseSoftLimit() -> (before: Int, after: Int)? {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
    let before = limit.rlim_cur
    if limit.rlim_cur < limit.rlim_max {
      limit.rlim_cur = limit.rlim_max
      if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 { limit.rlim_cur = before }
    }
    return (Int(clamping: before), Int(clamping: limit.rlim_cur))
  }

  /// The most connections a listener may hold with `configured` as its cap: below the soft
  /// limit, less the reserve.
  static func connectionCap(configured: Int) -> Int {
    guard let soft = Self.softLimit else { return configured }
    return max(1, min(configured, soft - Self.reserve))
  }
}
