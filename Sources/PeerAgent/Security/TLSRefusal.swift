internal import NIOCore
internal import NIOHTTP2
internal import NIOSSL
internal import NIOTLS

/// Turns what a failed handshake leaves behind — a BoringSSL error, an alert from the other
/// side, a connection closed early — into one sentence a person can act on.
enum TLSRefusal {
  /// The side that observed the failure.
  enum Observer {
    case listener
    case dialer
  }

  /// Describes a failure seen on a connection, or `nil` when `error` is not about TLS or the
  /// protocol (a plain connection reset is reported elsewhere).
  static func describe(_ error: any Error, observedBy observer: Observer) -> String? {
    let text = String(describing: error)
    func has(_ needle: String) -> Bool { text.contains(needle) }

    switch observer {
    case .listener:
      if has("PEER_DID_NOT_RETURN_A_CERTIFICATE") || has("CERTIFICATE_REQUIRED") {
        return "the dialer sent no client certificate (mutual TLS is required)"
      }
      if has("WRONG_VERSION_NUMBER") || has("HTTP_REQUEST") || has("UNKNOWN_PROTOCOL")
        || has("unexpectedRecordTooLarge") || has("RECORD_TOO_LARGE")
        || has("PACKET_LENGTH_TOO_LONG")
      {
        return "the dialer does not speak TLS (a plaintext client, e.g. one run with --insecure)"
      }
      if error is NIOHTTP2Errors.BadClientMagic {
        return "the dialer did not send HTTP/2 in plaintext (a TLS client? this listener runs --insecure)"
      }
      if has("CERTIFICATE_VERIFY_FAILED") {
        return "the dialer's certificate was refused"
      }
      if has("ALERT_UNKNOWN_CA") || has("ALERT_BAD_CERTIFICATE") || has("ALERT_CERTIFICATE") {
        return "the dialer refused this listener's certificate (\(Self.alertName(text)))"
      }
      if error is NIOSSLError || error is BoringSSLError {
        return "TLS handshake failed: \(text)"
      }
      return nil

    case .dialer:
      if has("uncleanShutdown") || has("EOF during handshake") {
        // The connection closed in the handshake: the listener stopped or went away, which a
        // redial may cure. Not a refusal.
        return nil
      }
      if has("CERTIFICATE_REQUIRED") {
        return "the listener requires a client certificate and none was sent"
      }
      if has("ALERT_CERTIFICATE_EXPIRED") {
        return "the listener refused this peer's certificate: it has expired"
      }
      if has("ALERT_UNKNOWN_CA") || has("ALERT_BAD_CERTIFICATE") || has("ALERT_CERTIFICATE_UNKNOWN")
        || has("ALERT_HANDSHAKE_FAILURE") || has("ALERT_CERTIFICATE_REVOKED")
        || has("ALERT_UNSUPPORTED_CERTIFICATE")
      {
        return
          "the listener refused this peer's certificate (\(Self.alertName(text))): is it signed by the listener's CA, still valid, and not revoked? (the listener's log says which)"
      }
      if has("WRONG_VERSION_NUMBER") || has("UNKNOWN_PROTOCOL") || has("RECORD_TOO_LARGE")
        || has("PACKET_LENGTH_TOO_LONG")
      {
        return "the listener does not speak TLS (is it running with --insecure?)"
      }
      if has("CERTIFICATE_VERIFY_FAILED") {
        return "the listener's certificate was refused"
      }
      if error is NIOSSLError || error is BoringSSLError {
        return "TLS handshake failed: \(text)"
      }
      return nil
    }
  }

  private static func alertName(_ text: String) -> String {
    for name in [
      "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED",
      "HANDSHAKE_FAILURE", "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_REQUIRED",
    ] where text.contains(name) {
      return "TLS alert \(name.lowercased())"
    }
    return "TLS alert"
  }
}
