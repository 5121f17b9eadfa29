/// This release of PeerAgent (`peer-agent --version`).
public enum PeerAgentVersion {
  /// The version, semantic: the wire contract (`Protos/contact.proto`) only ever grows
  /// compatibly, so any two versions interoperate.
  public static let current = "0.9.0"
}
