#!/usr/bin/env bash
# The hostile-input suite: attacks at the TLS, HTTP/2 and gRPC layers against a real
# `peer-agent run` listener over mutual TLS, with h2load (through stunnel, for the client
# certificate) and openssl s_client as outside judges. Prints `N passed, M failed`.
#
#   scripts/hostile.sh [--only TEXT]     (run only the cases whose name contains TEXT)
#
# Uses the virtual environment of scripts/interop.sh (.build/interop/venv), adding h2 and
# cryptography; needs h2load (nghttp2-client), stunnel4 and openssl from Debian.
# Logs: .build/hostile/logs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

for tool in h2load stunnel4 openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool: apt-get install nghttp2-client stunnel4 openssl" >&2; exit 2; }
done

work=.build/hostile
venv=.build/interop/venv
mkdir -p "$work"
echo "== python environment ($venv)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check grpcio grpcio-tools h2 cryptography
python="$venv/bin/python"

echo "== python stubs from Protos/contact.proto"
rm -rf "$work/gen" && mkdir -p "$work/gen"
"$python" -m grpc_tools.protoc -I Protos --python_out="$work/gen" --grpc_python_out="$work/gen" Protos/contact.proto
export PYTHONPATH="$root/$work/gen:$root/Tests/Hostile"

echo "== peer-agent"
swift build --product peer-agent
bin="$(swift build --show-bin-path)/peer-agent"

echo "== certificates"
rm -rf "$work/certs" "$work/other-certs" "$work/expired" "$work/logs"
mkdir -p "$work/logs" "$work/expired"
"$bin" certs --out "$work/certs" --names hub,edge,good,attacker,h2load,dialer >/dev/null 2>&1
"$bin" certs --out "$work/other-certs" --names intruder >/dev/null 2>&1
"$python" Tests/Hostile/make_expired.py "$work/certs" "$work/expired"

echo "== hostile cases"
"$python" Tests/Hostile/run_hostile.py --peer-agent "$bin" --certs "$work/certs" \
  --other-certs "$work/other-certs" --expired "$work/expired" --logs "$work/logs" ${only:+--only "$only"}
