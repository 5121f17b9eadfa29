#!/usr/bin/env bash
# Checks what outside scripts rely on in `peer-agent bench`, through the real binary, never its
# timings: --workloads runs only what it names, --worker-prefix starts every worker through the
# prefix (and the run still ends), and the connections cell counts every link the listener
# holds. Run after the test suite, not inside it: a bench loads both cores for seconds, and the
# suites beside it time heartbeats and cancellations.
#
#   scripts/bench-contract.sh [PEER_AGENT]     (default: the debug build's peer-agent)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-$(swift build --show-bin-path)/peer-agent}"
[ -x "$bin" ] || { echo "bench-contract.sh: no peer-agent at $bin (swift build first)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A prefix that records each worker it starts, then becomes it.
cat > "$work/wrap.sh" <<WRAP
#!/bin/sh
echo "\$*" >> "$work/started"
exec "\$@"
WRAP
chmod +x "$work/wrap.sh"

echo "== bench --workloads ping-pong,connections --worker-prefix (40 idle links)"
"$bin" bench --quick --repeats 1 --modes single --no-grpcio --workloads ping-pong,connections \
  --ping-pong-requests 10 --connections 40 --worker-prefix "$work/wrap.sh" --json "$work/bench.json" > "$work/bench.txt"

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
cells = json.load(open(f"{work}/bench.json"))["cells"]
started = [l for l in open(f"{work}/started").read().splitlines() if l]
failures = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok: failures.append(what)
workloads = {c["workload"] for c in cells}
check(workloads == {"ping-pong", "connections"}, f"only the named workloads ran: {sorted(workloads)}")
pings = [c for c in cells if c["workload"] == "ping-pong"]
check(bool(pings) and all(c["p50_us"] > 0 and c["requests"] == 10 for c in pings), f"{len(pings)} ping-pong cells with figures")
# A pair of workers serves both directions of a cell; the connections workload starts a
# listener, the dialers and the restarted listener.
restarted = [l for l in started if "--role listener" in l and "--connections-per-address" in l]
check(len(started) >= len(pings) + 3 and all("bench-worker" in l for l in started) and len(restarted) == 2,
      f"{len(started)} workers started through the prefix, the restarted listener among them")
conn = next((c for c in cells if c["workload"] == "connections"), {})
check(conn.get("connections") == 40 and conn.get("connections_listener") == 40,
      f"connections cell: {conn.get('connections')} links, {conn.get('connections_listener')} held by the listener")
check((conn.get("open_files_listener") or 0) >= 40 and (conn.get("heap_per_link_kib") or 0) > 0
      and (conn.get("rss_per_link_trimmed_kib") is not None),
      f"connections cell: {conn.get('open_files_listener')} fds, heap {conn.get('heap_per_link_kib')} KiB per link")
raise SystemExit(1 if failures else 0)
PY
echo "bench contract: ok"
