#!/usr/bin/env bash
# Counts the instructions and heap allocations of one ping-pong round trip, PeerAgent (single and
# dual, memory and SQLite, one loop and one per core) and raw grpc-swift-2 side by side, with
# valgrind's callgrind: instruction counts repeat from run to run on a noisy, shared machine, where
# times do not.
#
#   scripts/profile-round-trip.sh [--binary PATH] [--out DIR] [--small N] [--large N] [--modes M]
#
#   --binary  a release peer-agent built with DWARF 4 debug information, which valgrind 3.19
#             reads (default .build/release/peer-agent; build it with
#             swift build -c release --product peer-agent -Xswiftc -g -Xswiftc -Xfrontend \
#               -Xswiftc -dwarf-version=4 -Xcc -gdwarf-4 -Xcxx -gdwarf-4 )
#   --out     where the callgrind files and the summary go (default .build/profile)
#   --small   ping-pong requests of the first run (default 200)
#   --large   ping-pong requests of the second run (default 1200)
#   --modes   bench modes (default raw,single,dual)
#
# Runs `peer-agent bench --workloads ping-pong` twice, every worker under callgrind; what a pair
# of workers costs to start, connect and stop is the same in both runs, so the difference,
# divided by the difference in round trips, is the cost of one round trip. Writes
# OUT/summary.md (per cell: instructions and allocations per round trip and ÷ raw; by module;
# the costliest functions) and keeps the callgrind files for callgrind_annotate. Takes 15 to 30
# minutes on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
binary="$root/.build/release/peer-agent"
out="$root/.build/profile"
small=200
large=1200
modes="raw,single,dual"

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --small) small="$2"; shift 2 ;;
    --large) large="$2"; shift 2 ;;
    --modes) modes="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "profile-round-trip.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

command -v valgrind > /dev/null || { echo "profile-round-trip.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
[ -x "$binary" ] || { echo "profile-round-trip.sh: no peer-agent at $binary (see --help for the build)" >&2; exit 1; }
[[ "$small" =~ ^[0-9]+$ && "$large" =~ ^[0-9]+$ && "$large" -gt "$small" ]] || {
  echo "profile-round-trip.sh: --small and --large take counts, --large above --small" >&2; exit 2
}

command -v cc > /dev/null || { echo "profile-round-trip.sh: a C compiler is missing (apt-get install gcc)" >&2; exit 1; }
case "$out" in *" "*) echo "profile-round-trip.sh: --out must have no spaces" >&2; exit 2 ;; esac
mkdir -p "$out"
# valgrind 3.19 dies in Swift's async main (dispatch_main's sigsuspend): see the C file.
cc -shared -fPIC -O2 -o "$out/sigsuspend.so" "$here/valgrind-sigsuspend.c"

for count in "$small" "$large"; do
  dir="$out/$count"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "== $count ping-pong requests per direction, every worker under callgrind" >&2
  (cd "$root" && "$binary" bench --workloads ping-pong --modes "$modes" --no-grpcio --repeats 1 \
    --ping-pong-requests "$count" --json "$dir/bench.json" \
    --worker-prefix "env LD_PRELOAD=$out/sigsuspend.so valgrind --tool=callgrind --callgrind-out-file=$dir/cg.%p --log-file=$dir/valgrind.%p") > "$dir/bench.txt"
done

python3 "$here/profile_summary.py" "$out/$small" "$small" "$out/$large" "$large" --markdown "$out/summary.md"
echo "wrote $out/summary.md; callgrind files in $out/$small and $out/$large" >&2
