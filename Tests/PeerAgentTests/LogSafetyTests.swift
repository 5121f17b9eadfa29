import Logging
import Synchronization
import Testing

@testable import PeerAgent
@testable import peer_agent

/// Values from outside — a certificate's name, a remote's text or reason — cannot forge a log
/// line or a console line.
@Suite("Logs: untrusted strings are escaped")
struct LogSafetyTests {
  final class Sink: Sendable {
    let lines = Mutex<[String]>([])
  }

  @Test("Control characters and backslashes are escaped; plain text is left as it is")
  func escaping() {
    #expect("edge-1.example".logSafe == "edge-1.example")
    #expect("evil\nlevel=error link=hub".logSafe == "evil\\nlevel=error link=hub")
    #expect("a\r\tb\u{1B}[31m\u{2028}c\\n".logSafe == "a\\r\\tb\\u{1B}[31m\\u{2028}c\\\\n")
  }

  @Test("The command's log handler escapes messages and every metadata value, nested ones too")
  func handler() {
    let sink = Sink()
    var logger = Logger(label: "test") { _ in
      EscapingLogHandler(inner: SinkHandler(sink: sink))
    }
    logger[metadataKey: "peer"] = "hub\nforged"
    logger.warning(
      "refused\nconnection",
      metadata: [
        "reason": "certificate 'x\ny'",
        "nested": .dictionary(["name": "a\nb"]),
        "list": .array(["c\nd"]),
        "convertible": .stringConvertible(PeerIdentity.verified("e\nf")),
      ]
    )
    let lines = sink.lines.withLock { $0 }
    #expect(lines.count == 1)
    #expect(!lines[0].contains("\n"), "\(lines[0])")
    #expect(lines[0].contains("hub\\nforged"))
    #expect(lines[0].contains("x\\ny"))
    // Nested values are printed with Swift's own quoting around the escape.
    #expect(lines[0].contains("\\nb") && lines[0].contains("\\nd") && lines[0].contains("e\\nf"))
  }

  @Test("A link's name goes into the library's log metadata escaped, whatever handler writes it")
  func linkMetadata() {
    let logger = Logger(label: "test").forLink(.verified("edge\nlevel=critical"))
    #expect(logger[metadataKey: "link"] == "edge\\nlevel=critical")
  }
}

/// A handler that appends each line it writes to a sink the test reads.
struct SinkHandler: LogHandler {
  let sink: LogSafetyTests.Sink
  var logLevel: Logger.Level = .trace
  var metadata: Logger.Metadata = [:]

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
    let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    self.sink.lines.withLock { $0.append("\(event.message) \(fields)") }
  }
}
