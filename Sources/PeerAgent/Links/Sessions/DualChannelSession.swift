/// A dual-channel dialer's session: `sendStatus` only — the remote sends its own requests on
/// its own connection to this peer's listener.
struct DualChannelSession: DialerSession {
  let setup: SessionSetup

  var streams: [@Sendable () async throws -> Void] {
    let sendStatus = SendStatusStream(setup: self.setup)
    return [{ try await sendStatus.run() }]
  }
}
