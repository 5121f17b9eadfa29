#!/usr/bin/env python3
"""Instructions and allocations per ping-pong round trip, from two callgrind runs of the bench.

    profile_summary.py SMALL_DIR SMALL_COUNT LARGE_DIR LARGE_COUNT [--top N] [--markdown FILE]

Each DIR holds the callgrind files (cg.PID) of one `peer-agent bench --workloads ping-pong
--worker-prefix 'valgrind --tool=callgrind ...'` run with COUNT ping-pong requests. A pair of
workers (listener and dialer of one mode, storage and loop count) costs the same to start, to
connect and to stop in both runs, so the difference between the runs, divided by the difference
in round trips, is what one round trip costs: both processes, both directions averaged.

Prints, for each pair: instructions (Ir) and heap allocations (calls to malloc, calloc, realloc,
posix_memalign, aligned_alloc) per round trip, and ÷ raw; then where the instructions go, by
module, and the functions that cost most, per round trip.
"""
import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict

ALLOCATORS = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}


class Profile:
    """One callgrind file: total Ir, self Ir per function, allocator calls."""

    def __init__(self, path):
        self.command = ""
        self.total = 0
        self.self_cost = defaultdict(int)  # function name -> Ir
        self.object_of = {}  # function name -> object file
        self.allocations = 0
        self._parse(path)

    def _parse(self, path):
        names = {"fn": {}, "ob": {}}
        current_ob = current_fn = current_cfn = ""
        skip_next_cost = False

        def name(kind, value):
            match = re.match(r"\((\d+)\)(?: (.*))?$", value)
            if not match:
                return value
            key, text = match.group(1), match.group(2)
            table = names[kind]
            if text is not None:
                table[key] = text
            return table.get(key, key)

        with open(path, errors="replace") as lines:
            for line in lines:
                line = line.rstrip("\n")
                if not line:
                    continue
                head = line[0]
                if head.isdigit() or head in "+-*":
                    if skip_next_cost:
                        skip_next_cost = False
                        continue
                    parts = line.split()
                    if len(parts) > 1:
                        self.self_cost[current_fn] += int(parts[1])
                    continue
                key, _, value = line.partition("=")
                if key == "fn":
                    current_fn = name("fn", value)
                    self.object_of.setdefault(current_fn, current_ob)
                elif key == "cfn":
                    current_cfn = name("fn", value)
                elif key in ("ob", "cob"):
                    resolved = name("ob", value)
                    if key == "ob":
                        current_ob = resolved
                elif key == "calls":
                    skip_next_cost = True
                    if current_cfn in ALLOCATORS:
                        self.allocations += int(value.split()[0])
                elif line.startswith("cmd:"):
                    self.command = line[4:].strip()
                elif line.startswith("totals:") or line.startswith("summary:"):
                    self.total = int(line.split(":")[1].split()[0])

    def pair_key(self):
        """(mode, storage, loops, role) from the worker's arguments; None for other processes."""
        words = self.command.split()
        if "bench-worker" not in words or "--peers" in words:
            return None

        def option(flag, default):
            return words[words.index(flag) + 1] if flag in words else default

        return (option("--mode", "?"), option("--storage", "memory"), option("--event-loops", ""), option("--role", "?"))


def module_of(function, obj):
    """The module an instruction is spent in: a Swift module, BoringSSL, or a shared library."""
    base = os.path.basename(obj)
    if base and base != "peer-agent":
        return base.split(".so")[0]
    match = re.match(r"\$s(\d+)([A-Za-z_][A-Za-z0-9_]*)", function)
    if match:
        return match.group(2)[: int(match.group(1))]
    if function.startswith("$sS") or function.startswith("$ss"):
        return "Swift (specialized here)"
    if function.startswith("CNIOBoringSSL") or function.startswith("CNIOBoringSSLShims"):
        return "BoringSSL"
    if function.startswith("c_nio") or function.startswith("CNIO"):
        return "NIO (C)"
    if function.startswith("$s"):
        return "Swift (specialized here)"
    return "C (in peer-agent)"


def load(directory):
    profiles = {}
    for entry in sorted(os.listdir(directory)):
        if not entry.startswith("cg."):
            continue
        profile = Profile(os.path.join(directory, entry))
        key = profile.pair_key()
        if key is not None:
            profiles[key] = profile
    return profiles


def round_trips(count):
    # Two directions; each runs count requests after a warm-up of max(2, count / 10).
    return 2 * (count + max(2, count // 10))


def demangle(names):
    try:
        out = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
        return out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("small_dir")
    parser.add_argument("small_count", type=int)
    parser.add_argument("large_dir")
    parser.add_argument("large_count", type=int)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--markdown", help="also write the tables to this file")
    args = parser.parse_args()

    small, large = load(args.small_dir), load(args.large_dir)
    trips = round_trips(args.large_count) - round_trips(args.small_count)
    if trips <= 0:
        sys.exit("profile_summary.py: LARGE_COUNT must be above SMALL_COUNT")

    order = ["raw", "raw-defaults", "single", "dual"]
    pairs = sorted({key[:3] for key in large}, key=lambda p: (order.index(p[0]) if p[0] in order else 9, p[1], p[2]))
    rows = {}
    for pair in pairs:
        sides = [pair + (role,) for role in ("listener", "dialer")]
        if not all(side in small and side in large for side in sides):
            continue
        ir = sum(large[s].total - small[s].total for s in sides) / trips
        allocs = sum(large[s].allocations - small[s].allocations for s in sides) / trips
        functions = defaultdict(float)
        objects = {}
        for side in sides:
            for function, cost in large[side].self_cost.items():
                functions[function] += (cost - small[side].self_cost.get(function, 0)) / trips
                objects[function] = large[side].object_of.get(function, "")
        modules = defaultdict(float)
        for function, cost in functions.items():
            modules[module_of(function, objects[function])] += cost
        rows[pair] = {"ir": ir, "allocs": allocs, "functions": functions, "objects": objects, "modules": modules}

    def label(pair):
        mode, storage, loops = pair
        return mode + ("" if storage == "memory" else f" {storage}") + (f" {loops} loop{'s' if loops != '1' else ''}" if loops else "")

    raw = rows.get(("raw", "memory", ""))
    out = []
    out.append(f"Per ping-pong round trip (both processes, both directions; {trips} round trips between the runs)\n")
    out.append("| cell | instructions | ÷ raw | allocations | ÷ raw |")
    out.append("|---|---:|---:|---:|---:|")
    for pair, row in rows.items():
        ratio_ir = f"{row['ir'] / raw['ir']:.2f}" if raw else ""
        ratio_alloc = f"{row['allocs'] / raw['allocs']:.2f}" if raw and raw["allocs"] > 0 else ""
        out.append(f"| {label(pair)} | {row['ir']:,.0f} | {ratio_ir} | {row['allocs']:.1f} | {ratio_alloc} |")

    modules = sorted({m for row in rows.values() for m in row["modules"]}, key=lambda m: -max(r["modules"].get(m, 0) for r in rows.values()))
    # The side-by-side view: each mode in memory on its default loops.
    shown = [pair for pair in rows if pair[1] == "memory" and pair[2] == ""]
    out.append("\nInstructions per round trip by module\n")
    out.append("| module | " + " | ".join(label(p) for p in shown) + " |")
    out.append("|---|" + "---:|" * len(shown))
    for module in modules:
        values = [rows[p]["modules"].get(module, 0) for p in shown]
        if max(values) < 200:
            continue
        out.append(f"| {module} | " + " | ".join(f"{v:,.0f}" for v in values) + " |")

    for pair in shown:
        if pair[0].startswith("raw"):
            continue
        top = sorted(rows[pair]["functions"].items(), key=lambda item: -item[1])[: args.top]
        names = demangle([name for name, _ in top])
        out.append(f"\nTop {args.top} functions by own instructions per round trip: {label(pair)}\n")
        out.append("| instructions | module | function |")
        out.append("|---:|---|---|")
        for (name, cost), pretty in zip(top, names):
            pretty = pretty.replace("|", "\\|")
            if len(pretty) > 140:
                pretty = pretty[:137] + "…"
            out.append(f"| {cost:,.0f} | {module_of(name, rows[pair]['objects'][name])} | `{pretty}` |")

    text = "\n".join(out) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(text)


if __name__ == "__main__":
    main()
