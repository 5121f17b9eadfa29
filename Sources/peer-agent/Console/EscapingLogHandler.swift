internal import Logging
internal import PeerAgent

/// A log handler that escapes control characters in every message and metadata value before
/// its inner handler writes them, so that no value from outside — a certificate name, a
/// reason a remote gave — can forge a log line.
///
/// With ``dropsEventMirrors``, a record that says what an event line already says (the
/// library marks those with an `event` metadata key) is not written: `--output text` prints
/// one line per event, not a log line and the event's line.
struct EscapingLogHandler<Inner: LogHandler>: LogHandler {
  var inner: Inner
  var dropsEventMirrors = false

  var logLevel: Logger.Level {
    get { self.inner.logLevel }
    set { self.inner.logLevel = newValue }
  }

  var metadata: Logger.Metadata {
    get { self.inner.metadata }
    set { self.inner.metadata = newValue }
  }

  var metadataProvider: Logger.MetadataProvider? {
    get { self.inner.metadataProvider }
    set { self.inner.metadataProvider = newValue }
  }

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.inner[metadataKey: key] }
    set { self.inner[metadataKey: key] = newValue }
  }

  func log(event: LogEvent) {
    if self.dropsEventMirrors, event.metadata?["event"] != nil { return }
    var event = event
    event.message = "\(event.message.description.logSafe)"
    event.metadata = event.metadata.map(Self.escape)
    var inner = self.inner
    inner.metadata = Self.escape(inner.metadata)
    inner.log(event: event)
  }

  static func escape(_ metadata: Logger.Metadata) -> Logger.Metadata {
    metadata.mapValues(Self.escape)
  }

  static func escape(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
    switch value {
    case .string(let text): .string(text.logSafe)
    case .stringConvertible(let convertible): .string(convertible.description.logSafe)
    case .dictionary(let dictionary): .dictionary(Self.escape(dictionary))
    case .array(let array): .array(array.map(Self.escape))
    }
  }
}

extension EscapingLogHandler where Inner == StreamLogHandler {
  /// Escaped lines on standard error at `level`: the command's logs.
  static func standardError(
    label: String,
    level: Logger.Level,
    dropsEventMirrors: Bool = false,
    metadataProvider: Logger.MetadataProvider? = nil
  ) -> Self {
    var inner = StreamLogHandler.standardError(label: label, metadataProvider: metadataProvider)
    inner.logLevel = level
    return Self(inner: inner, dropsEventMirrors: dropsEventMirrors)
  }
}
