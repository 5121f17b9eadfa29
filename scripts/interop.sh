#!/usr/bin/env bash
# Proves that the article's own Python programs (grpcio) interoperate with PeerAgent, in both
# roles and both modes, over mutual TLS and plaintext; and that the committed generated code is
# current.
#
#   scripts/interop.sh [--tasks N]      (N >= 1000 by default)
#
# Makes a virtual environment under .build/interop with grpcio and grpcio-tools from PyPI,
# generates the Python stubs from Protos/contact.proto, builds peer-agent, makes certificates
# with `peer-agent certs`, then runs Tests/Interop/run_interop.py. Logs: .build/interop/logs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

tasks=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) tasks="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

work=.build/interop
mkdir -p "$work"

echo "== python environment ($work/venv)"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check grpcio grpcio-tools grpcio-health-checking opentelemetry-proto
python="$work/venv/bin/python"
"$python" -c 'import grpc; print("grpcio", grpc.__version__)'

echo "== python stubs from Protos/contact.proto"
rm -rf "$work/gen" && mkdir -p "$work/gen/contact"
touch "$work/gen/contact/__init__.py"
"$python" -m grpc_tools.protoc -I Protos --python_out="$work/gen/contact" \
  --grpc_python_out="$work/gen/contact" Protos/contact.proto
# The generated service module imports `contact_pb2` at top level: put both on the path.
export PYTHONPATH="$root/$work/gen:$root/$work/gen/contact:$root/Tests/Interop"

echo "== peer-agent"
swift build --product peer-agent
bin="$(swift build --show-bin-path)/peer-agent"

echo "== certificates"
rm -rf "$work/certs" "$work/other-certs" "$work/logs"
mkdir -p "$work/logs"
"$bin" certs --out "$work/certs" --names hub,edge,article-client,article-server,dual-peer 2>/dev/null >/dev/null
"$bin" certs --out "$work/other-certs" --names intruder 2>/dev/null >/dev/null

echo "== generated Swift code is current"
status=0
plugins="$(swift build --show-bin-path)"
if command -v protoc >/dev/null 2>&1 && [ -x "$plugins/protoc-gen-swift" ] && [ -x "$plugins/protoc-gen-grpc-swift-2" ]; then
  rm -rf "$work/swift-gen" && mkdir -p "$work/swift-gen"
  scripts/generate-protos.sh "$work/swift-gen" 2>/dev/null
  if diff -r "$work/swift-gen" Sources/ContactProto; then
    echo "ok   generated code matches Protos/contact.proto"
  else
    echo "FAIL Sources/ContactProto differs from what Protos/contact.proto generates: run scripts/generate-protos.sh"
    status=1
  fi
else
  echo "SKIPPED: the generated-code check needs protoc (apt-get install protobuf-compiler) and the" \
    "plugins (swift build --product protoc-gen-swift; swift build --product protoc-gen-grpc-swift-2)"
fi

echo "== interop: the article's programs and peer-agent ($tasks tasks each way)"
"$python" Tests/Interop/run_interop.py --peer-agent "$bin" --python "$python" \
  --certs "$work/certs" --other-certs "$work/other-certs" --logs "$work/logs" --tasks "$tasks" \
  || status=1
exit $status
