private import Foundation

/// What /proc says about a process: CPU time, peak memory, open files and TCP connections.
struct ProcessStats: Codable, Sendable {
  /// User + system CPU seconds since the process started.
  var cpuSeconds: Double
  /// Peak resident set size, in KiB (VmHWM).
  var peakRSSKiB: Int
  /// Resident set size now, in KiB (VmRSS).
  var rssKiB: Int = 0
  /// Open file descriptors.
  var openFiles: Int
  /// Established TCP connections owned by the process.
  var connections: Int

  /// All of a /proc file. Its size reads as 0, and `String(contentsOfFile:)` stops after the
  /// first page: /proc/PID/net/tcp with 2,000 connections is 60 pages.
  static func readAll(_ path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    var data = Data()
    while let chunk = try? handle.read(upToCount: 1 << 16), !chunk.isEmpty { data.append(chunk) }
    return String(decoding: data, as: UTF8.self)
  }

  static func read(pid: Int32) -> ProcessStats? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return nil }
    // Fields after "comm)": state is field 3; utime 14, stime 15 (1-based).
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var peak = 0
    var rss = 0
    if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
      for line in status.split(separator: "\n") {
        let value = Int(line.split(separator: " ").dropFirst().first.map(String.init) ?? "") ?? 0
        if line.hasPrefix("VmHWM:") { peak = value }
        if line.hasPrefix("VmRSS:") { rss = value }
      }
    }
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
    var sockets = Set<String>()
    for fd in fds {
      if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
        target.hasPrefix("socket:[")
      {
        sockets.insert(String(target.dropFirst(8).dropLast()))
      }
    }
    var established = 0
    for table in ["/proc/\(pid)/net/tcp", "/proc/\(pid)/net/tcp6"] {
      guard let text = Self.readAll(table) else { continue }
      for line in text.split(separator: "\n").dropFirst() {
        let columns = line.split(separator: " ")
        // st == 01 is ESTABLISHED; column 9 is the inode.
        if columns.count > 9, columns[3] == "01", sockets.contains(String(columns[9])) {
          established += 1
        }
      }
    }
    return ProcessStats(
      cpuSeconds: (utime + stime) / ticks,
      peakRSSKiB: peak,
      rssKiB: rss,
      openFiles: fds.count,
      connections: established
    )
  }
}

/// Latency percentiles, exact: the bench keeps every sample (counts are bounded).
struct LatencySummary: Codable, Sendable {
  var count: Int
  var p50: Double
  var p90: Double
  var p99: Double
  var p999: Double
  var max: Double
  /// Up to 200 points of the CDF: (latency µs, fraction ≤).
  var cdf: [[Double]]

  init(microseconds samples: [Double]) {
    let sorted = samples.sorted()
    func at(_ q: Double) -> Double {
      guard !sorted.isEmpty else { return 0 }
      let index = Swift.min(sorted.count - 1, Swift.max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))
      return sorted[index]
    }
    self.count = sorted.count
    self.p50 = at(0.5)
    self.p90 = at(0.9)
    self.p99 = at(0.99)
    self.p999 = at(0.999)
    self.max = sorted.last ?? 0
    let step = Swift.max(1, sorted.count / 200)
    self.cdf = stride(from: 0, to: sorted.count, by: step).map { [sorted[$0], Double($0 + 1) / Double(sorted.count)] }
    if let last = sorted.last { self.cdf.append([last, 1]) }
  }
}

#if canImport(Glibc)
private import Glibc
#endif

extension BenchProtocol.Heap {
  /// This process's heap now; with `trimming`, after `malloc_trim(0)` gave the allocator's
  /// free pages back, so that the resident size shows what the process holds. glibc's
  /// functions are looked up at run time (Swift's Glibc module does not import malloc.h).
  static func now(trimming: Bool) -> Self {
    var heap = Self(inUseKiB: 0, freeKiB: 0, rssKiB: 0)
    #if canImport(Glibc)
    typealias Trim = @convention(c) (Int) -> Int32
    typealias Info = @convention(c) (Int32, UnsafeMutablePointer<FILE>?) -> Int32
    let libc = dlopen(nil, RTLD_NOW)
    if trimming, let trim = dlsym(libc, "malloc_trim") { _ = unsafeBitCast(trim, to: Trim.self)(0) }
    if let info = dlsym(libc, "malloc_info") {
      var buffer: UnsafeMutablePointer<CChar>?
      var size = 0
      if let stream = open_memstream(&buffer, &size) {
        _ = unsafeBitCast(info, to: Info.self)(0, stream)
        fclose(stream)
        let xml = buffer.map { String(cString: $0) } ?? ""
        free(buffer)
        (heap.inUseKiB, heap.freeKiB) = Self.parse(mallocInfo: xml)
      }
    }
    #endif
    heap.rssKiB = ProcessStats.read(pid: getpid())?.rssKiB ?? 0
    return heap
  }

  /// In use and free, in KiB, from `malloc_info`'s totals (the last of each kind, after every
  /// arena's): in use is what the arenas took from the system, plus mmapped chunks, minus
  /// their free chunks.
  static func parse(mallocInfo xml: String) -> (inUse: Int, free: Int) {
    func last(_ tag: String, _ type: String) -> Int {
      let marker = "<\(tag) type=\"\(type)\""
      guard let line = xml.split(separator: "\n").last(where: { $0.contains(marker) }),
        let size = line.range(of: "size=\"")
      else { return 0 }
      return Int(line[size.upperBound...].prefix { $0.isNumber }) ?? 0
    }
    let free = last("total", "fast") + last("total", "rest")
    let inUse = last("system", "current") + last("total", "mmap") - free
    return (max(0, inUse) / 1024, free / 1024)
  }
}
