#!/usr/bin/env bash
# Runs the built test binary N times with a filter, each run under a hard time limit, and counts
# the runs that hung and the runs that failed. A test that hangs or fails one run in twenty is a
# bug in the product until shown otherwise: this is how to find it.
#
#   scripts/stress.sh FILTER N [--limit SECONDS] [--bin PATH] [--logs DIR]
#
#   FILTER   a swift-testing filter (a suite or test name, a regular expression); '.' for all
#   N        how many runs
#   --limit  the hard limit of one run (default 120 s): the test process is killed (SIGKILL,
#            its whole process group, children included) when it is reached, and the run
#            counts as hung
#   --bin    the test binary (default: the debug build's peer-agentPackageTests.xctest; build
#            it first with `swift build --build-tests`)
#   --logs   where each run's output goes (default .build/stress/FILTER); kept for failed and
#            hung runs only
#
# Prints one line per run that did not pass, then `N runs: H hung, F failed`. Exits 0 only when
# every run passed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

if [ $# -lt 2 ]; then usage >&2; exit 2; fi
filter="$1"; runs="$2"; shift 2
limit=120
bin=""
logs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --limit) limit="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --logs) logs="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "stress.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$runs" in ''|*[!0-9]*) echo "stress.sh: N must be a whole number, not '$runs'" >&2; exit 2 ;; esac
case "$limit" in ''|*[!0-9]*) echo "stress.sh: --limit must be whole seconds, not '$limit'" >&2; exit 2 ;; esac

if [ -z "$bin" ]; then
  bin="$(cd "$root" && swift build --show-bin-path 2>/dev/null)/peer-agentPackageTests.xctest"
fi
if [ ! -x "$bin" ]; then
  echo "stress.sh: no test binary at $bin: run 'swift build --build-tests' first (or give --bin)" >&2
  exit 2
fi
if [ -z "$logs" ]; then
  logs="$root/.build/stress/$(printf '%s' "$filter" | tr -c 'A-Za-z0-9._-' '_')"
fi
mkdir -p "$logs"

hung=0
failed=0
busy=0
for ((run = 1; run <= runs; run++)); do
  log="$logs/run-$run.log"
  start=$(date +%s.%N)
  # setsid: the run gets a process group of its own, so the kill reaches the test process and
  # every child it started (peer-agent processes, Python), not only a wrapper.
  setsid "$bin" --testing-library swift-testing --filter "$filter" >"$log" 2>&1 &
  pid=$!
  status=""
  deadline=$(( $(date +%s) + limit ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      kill -KILL -- "-$pid" 2>/dev/null
      kill -KILL "$pid" 2>/dev/null
      status=hung
      break
    fi
    sleep 0.2
  done
  wait "$pid" 2>/dev/null
  code=$?
  if [ "$code" -eq 126 ] && grep -q "Text file busy" "$log" && [ "$busy" -lt 5 ]; then
    busy=$((busy + 1))
    # The binary was still being written (a copy or a build finishing): not a test result.
    echo "run $run: the binary could not start yet (text file busy); running it again"
    sleep 1
    run=$((run - 1))
    continue
  fi
  elapsed=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
  if [ "$status" = hung ]; then
    hung=$((hung + 1))
    echo "run $run: hung (killed after ${limit} s); log: $log"
  elif [ "$code" -ne 0 ] || ! grep -q "passed after" "$log"; then
    failed=$((failed + 1))
    echo "run $run: failed (exit $code, ${elapsed} s); log: $log"
    grep -E "✘|recorded an issue|failed after" "$log" | head -5 | sed 's/^/    /'
  else
    rm -f "$log"
  fi
done
echo "$runs runs: $hung hung, $failed failed"
[ "$hung" -eq 0 ] && [ "$failed" -eq 0 ]
