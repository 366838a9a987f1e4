#!/usr/bin/env python3
"""Turns a `cargo bench -p orm-tests --bench graphs` run into the tables of BENCHMARKS.md.

    cargo bench -p orm-tests --bench graphs | tee /tmp/bench.log
    python3 tests/benches/report.py /tmp/bench.log > /tmp/tables.md

Reads criterion's medians from target/criterion for the benchmarks the log shows ran (a
benchmark missing from the log is `-`, not the median of an older run), the statement counts
from the bench's `check ...` lines, and the peak heap lines from the log.
"""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parents[2] / "target" / "criterion"
log = pathlib.Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else ""

statements = {}
for m in re.finditer(r"^check (\S+)/(\S+)/(\d+): checksum \d+, (\d+) statements", log, re.M):
    statements[(m.group(1), m.group(2), int(m.group(3)))] = int(m.group(4))


# The benchmarks this run timed: criterion prints `group/bench/n` above each `time:` line.
ran = set(re.findall(r"^(\S+/\S+/\d+)\n\s+time:", log, re.M))


def median(group, bench, n):
    path = root / group / bench / str(n) / "new" / "estimates.json"
    if f"{group}/{bench}/{n}" not in ran or not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.0f} µs"


groups = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "report")
order = ["people-address-manager", "first-tenth-reports", "people-projects", "filters",
         "decode-person-address", "session-scope", "detector-overhead", "echo-overhead"]
groups = [g for g in order if g in groups] + [g for g in groups if g not in order]
for group in groups:
    strategies = sorted({p.name[len("orm-"):] for p in (root / group).iterdir() if p.name.startswith("orm-")})
    sizes = sorted({int(p.name) for s in strategies for p in (root / group / f"orm-{s}").iterdir() if p.name.isdigit()})
    print(f"\n### {group}\n")
    baseline = {"detector-overhead": "same ORM, detector off",
                "echo-overhead": "same ORM, echo off",
                "session-scope": "same ORM, graph dropped first"}.get(group, "hand-written diesel")
    print(f"| strategy | people | ORM | {baseline} | ratio | statements |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in strategies:
        for n in sizes:
            orm, hand = median(group, f"orm-{s}", n), median(group, f"hand-{s}", n)
            ratio = f"{orm / hand:.2f}" if orm and hand else "-"
            count = statements.get((group, s, n), "-")
            print(f"| {s} | {n:,} | {fmt(orm)} | {fmt(hand)} | {ratio} | {count} |")

heap = re.findall(r"^peak heap.*$", log, re.M)
if heap:
    print("\n### peak heap\n")
    for line in heap:
        print(f"- {line}")
