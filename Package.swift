// swift-tools-version:6.1
/*
 * PeerAgent: two gRPC peers that call each other, in either direction, over mutual TLS.
 */

import PackageDescription

let products: [Product] = [
  .library(name: "PeerAgent", targets: ["PeerAgent"]),
  .library(name: "PeerAgentCluster", targets: ["PeerAgentCluster"]),
  .executable(name: "peer-agent", targets: ["peer-agent"]),
]

let dependencies: [Package.Dependency] = [
  .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
  .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
  .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
  .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
  .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
  .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
  .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
  .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
  .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
  .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3" ..< "5.0.0"),
  .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
  .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
  .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
  .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
  .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
  .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
  .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
  .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
  // Only the OTLP/gRPC exporter: the HTTP one would bring async-http-client into the build.
  .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPGRPC"]),
  .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
  // --cluster: hubs that share their registry, outbox and window in PostgreSQL.
  .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
]

// Swift 6 with the same upcoming features grpc-swift-2 builds with.
let defaultSwiftSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("InternalImportsByDefault"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let targets: [Target] = [
  // Generated protobuf messages and gRPC stubs for Protos/contact.proto (committed; see
  // scripts/generate-protos.sh).
  .target(
    name: "ContactProto",
    dependencies: [
      .product(name: "GRPCCore", package: "grpc-swift-2"),
      .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
      .product(name: "SwiftProtobuf", package: "swift-protobuf"),
    ],
    swiftSettings: [.swiftLanguageMode(.v6)]
  ),

  // The library: peers, links in both modes, correlation, mutual TLS and identity.
  .target(
    name: "PeerAgent",
    dependencies: [
      .target(name: "ContactProto"),
      .product(name: "GRPCCore", package: "grpc-swift-2"),
      .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
      .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
      .product(name: "NIOCore", package: "swift-nio"),
      .product(name: "NIOPosix", package: "swift-nio"),
      .product(name: "NIOTLS", package: "swift-nio"),
      .product(name: "NIOHTTP2", package: "swift-nio-http2"),
      .product(name: "NIOHPACK", package: "swift-nio-http2"),
      .product(name: "NIOSSL", package: "swift-nio-ssl"),
      // The listener's certificate and key, swapped on reload for new handshakes.
      .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
      .product(name: "X509", package: "swift-certificates"),
      .product(name: "Crypto", package: "swift-crypto"),
      .product(name: "SwiftASN1", package: "swift-asn1"),
      .product(name: "Logging", package: "swift-log"),
      .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      // The durable outbox and de-duplication window: embedded SQLite.
      .product(name: "GRDB", package: "GRDB.swift"),
      // Queues of waiting callers.
      .product(name: "DequeModule", package: "swift-collections"),
      // Metrics and spans, to any backend the application bootstraps or passes in.
      .product(name: "CoreMetrics", package: "swift-metrics"),
      .product(name: "Tracing", package: "swift-distributed-tracing"),
      .product(name: "Instrumentation", package: "swift-distributed-tracing"),
    ],
    swiftSettings: defaultSwiftSettings
  ),

  // Hubs that share one PostgreSQL database: the registry, outbox and window, on the core's
  // package seam (`HubSeam`, `DeliveryStore`). Only what runs a cluster links PostgresNIO.
  .target(
    name: "PeerAgentCluster",
    dependencies: [
      .target(name: "PeerAgent"),
      .product(name: "Logging", package: "swift-log"),
      .product(name: "NIOCore", package: "swift-nio"),
      // The database connection's TLS (sslmode, sslrootcert).
      .product(name: "NIOSSL", package: "swift-nio-ssl"),
      .product(name: "PostgresNIO", package: "postgres-nio"),
    ],
    swiftSettings: defaultSwiftSettings
  ),

  // The command-line tool.
  .executableTarget(
    name: "peer-agent",
    dependencies: [
      .target(name: "PeerAgent"),
      .target(name: "PeerAgentCluster"),
      .target(name: "PeerAgentBench"),
      .product(name: "NIOPosix", package: "swift-nio"),
      .product(name: "ArgumentParser", package: "swift-argument-parser"),
      .product(name: "Logging", package: "swift-log"),
      .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      // --metrics: Prometheus text at /metrics, served over HTTP/1.1.
      .product(name: "CoreMetrics", package: "swift-metrics"),
      .product(name: "Prometheus", package: "swift-prometheus"),
      .product(name: "NIOCore", package: "swift-nio"),
      .product(name: "NIOHTTP1", package: "swift-nio"),
      // --otlp-endpoint: spans to an OpenTelemetry collector over OTLP/gRPC.
      .product(name: "OTel", package: "swift-otel"),
      .product(name: "Tracing", package: "swift-distributed-tracing"),
    ],
    swiftSettings: defaultSwiftSettings
  ),

  // `peer-agent bench`: the workloads, their worker processes, the raw grpc-swift-2 baseline
  // and the report, behind the command's thin `bench` and `bench-worker` subcommands.
  .target(
    name: "PeerAgentBench",
    dependencies: [
      .target(name: "PeerAgent"),
      .target(name: "PeerAgentTestSupport"),
      // The raw baseline: plain grpc-swift-2 on the generated stubs.
      .target(name: "ContactProto"),
      .product(name: "GRPCCore", package: "grpc-swift-2"),
      .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
      .product(name: "NIOPosix", package: "swift-nio"),
      .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      .product(name: "Logging", package: "swift-log"),
    ],
    swiftSettings: defaultSwiftSettings
  ),

  // What the tests and the bench share: free ports, a scratch PostgreSQL server, child
  // processes' lines, command-line oracles. Not a product.
  .target(
    name: "PeerAgentTestSupport",
    swiftSettings: defaultSwiftSettings
  ),

  .testTarget(
    name: "PeerAgentTests",
    dependencies: [
      .target(name: "PeerAgent"),
      .target(name: "PeerAgentCluster"),
      .target(name: "PeerAgentBench"),
      .target(name: "PeerAgentTestSupport"),
      .target(name: "ContactProto"),
      .target(name: "peer-agent"),
      .product(name: "ArgumentParser", package: "swift-argument-parser"),
      .product(name: "GRPCCore", package: "grpc-swift-2"),
      .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
      .product(name: "NIOCore", package: "swift-nio"),
      .product(name: "NIOPosix", package: "swift-nio"),
      .product(name: "NIOSSL", package: "swift-nio-ssl"),
      .product(name: "X509", package: "swift-certificates"),
      .product(name: "Crypto", package: "swift-crypto"),
      .product(name: "SwiftASN1", package: "swift-asn1"),
      .product(name: "NIOHTTP2", package: "swift-nio-http2"),
      .product(name: "NIOHPACK", package: "swift-nio-http2"),
      .product(name: "Logging", package: "swift-log"),
      .product(name: "CoreMetrics", package: "swift-metrics"),
      .product(name: "Prometheus", package: "swift-prometheus"),
      .product(name: "NIOHTTP1", package: "swift-nio"),
      .product(name: "Tracing", package: "swift-distributed-tracing"),
      .product(name: "Instrumentation", package: "swift-distributed-tracing"),
      .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
      .product(name: "GRDB", package: "GRDB.swift"),
      .product(name: "PostgresNIO", package: "postgres-nio"),
    ],
    swiftSettings: defaultSwiftSettings
  ),
]

let package = Package(
  name: "peer-agent",
  platforms: [.macOS(.v15)],
  products: products,
  dependencies: dependencies,
  targets: targets
)
