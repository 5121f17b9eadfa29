extension String {
  /// The string with every control character written as an escape (`\n`, `\r`, `\t`,
  /// `\u{1B}`, …) and backslashes doubled, so that a value from outside — a certificate's
  /// name, a remote's text — cannot start a line of its own in a log or on the console.
  package var logSafe: String {
    guard self.unicodeScalars.contains(where: { Self.needsEscape($0) }) else { return self }
    var escaped = ""
    escaped.reserveCapacity(self.utf8.count + 8)
    for scalar in self.unicodeScalars {
      switch scalar {
      case "\n": escaped += "\\n"
      case "\r": escaped += "\\r"
      case "\t": escaped += "\\t"
      case "\\": escaped += "\\\\"
      case _ where Self.needsEscape(scalar):
        escaped += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
      default: escaped.unicodeScalars.append(scalar)
      }
    }
    return escaped
  }

  private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0x00 ... 0x1F, 0x7F ... 0x9F, 0x2028, 0x2029: true
    case 0x5C: true  // the backslash, so that an escape in the input is not mistaken for one
    default: false
    }
  }
}
