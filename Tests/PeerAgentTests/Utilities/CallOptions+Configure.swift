import GRPCCore

extension CallOptions {
  /// The default options, changed by `configure`.
  static func defaults(configure: (inout CallOptions) -> Void) -> CallOptions {
    var options = CallOptions.defaults
    configure(&options)
    return options
  }
}
