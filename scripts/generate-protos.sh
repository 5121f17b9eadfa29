#!/usr/bin/env bash
# Regenerates Sources/ContactProto from Protos/contact.proto and the standard gRPC health
# protocol, Protos/grpc/health/v1/health.proto.
#
# Needs `protoc` (Debian: apt-get install protobuf-compiler) and the two plugins, built from this
# package's own dependencies (swift-protobuf and grpc-swift-protobuf), so the generated code always
# matches the runtime versions Package.swift resolves:
#
#   swift build --product protoc-gen-swift
#   swift build --product protoc-gen-grpc-swift-2
#
# The script builds them when they are missing. CI never runs it: the generated code is committed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

if ! command -v protoc >/dev/null 2>&1; then
  echo "error: protoc not found; install it with: apt-get install protobuf-compiler" >&2
  exit 1
fi

bin="$(swift build --show-bin-path)"
for plugin in protoc-gen-swift protoc-gen-grpc-swift-2; do
  if [ ! -x "$bin/$plugin" ]; then
    echo "building $plugin (once)…" >&2
    swift build --product "$plugin" >&2
  fi
done

out="${1:-Sources/ContactProto}"
mkdir -p "$out"
protoc \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
  --swift_out="$out" \
  --swift_opt=Visibility=Package \
  --grpc-swift_out="$out" \
  --grpc-swift_opt=Visibility=Package,Server=true,Client=true \
  -I Protos \
  Protos/contact.proto Protos/grpc/health/v1/health.proto
echo "generated $(cd "$out" && find . -name '*.swift' | sort | tr '\n' ' ')" >&2
