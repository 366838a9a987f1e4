#!/usr/bin/env python3
"""Compile time of an application's models and queries: orm-core against diesel's own derives.

    python3 tests/benches/compile_time.py            # N = 10 30 60, 3 runs each
    python3 tests/benches/compile_time.py 120 --runs 1 --check-only

For each N, generates the two crates of `schema_gen.py` (the orm-core one and its diesel twin)
under $TMPDIR/orm-compile-time, builds their dependencies once (a shared target directory), then
times `cargo check` and a debug `cargo build` of the schema crate alone (`cargo clean -p` before
each, `CARGO_INCREMENTAL=0`, the two crates' runs interleaved), and prints the medians as a
markdown table with the peak memory of the compiler (from `/usr/bin/time`, when it is there).
"""
import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

here = pathlib.Path(__file__).resolve().parent
core = here.parents[1] / "orm-core"
parser = argparse.ArgumentParser()
parser.add_argument("sizes", nargs="*", type=int, default=[10, 30, 60])
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--check-only", action="store_true")
parser.add_argument("--flavours", default="orm,diesel", help="orm, diesel or both (the default)")
args = parser.parse_args()

root = pathlib.Path(tempfile.gettempdir()) / "orm-compile-time"
target = root / "target"
env = dict(os.environ, CARGO_TARGET_DIR=str(target), CARGO_INCREMENTAL="0")
gnu_time = shutil.which("time") and pathlib.Path("/usr/bin/time").exists()


def cargo(crate, *command):
    """Runs cargo in `crate`; returns (seconds, peak KiB of any process or None)."""
    cmd = ["cargo", *command, "--quiet"]
    if gnu_time:
        cmd = ["/usr/bin/time", "-f", "%M", *cmd]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=crate, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {crate}:\n{done.stderr[-4000:]}")
    peak = None
    if gnu_time:
        numbers = re.findall(r"^(\d+)$", done.stderr, re.M)
        peak = int(numbers[-1]) if numbers else None
    return seconds, peak


def measure_once(crate, name, command):
    subprocess.run(["cargo", "clean", "-p", name, "--quiet"], cwd=crate, env=env, check=True)
    return cargo(crate, command)


def fmt(seconds):
    return f"{seconds:.1f} s"


rows = []
flavours = args.flavours.split(",")
commands = ["check"] if args.check_only else ["check", "build"]
for n in args.sizes:
    crates = {}
    for flavour in flavours:
        crate = root / f"{flavour}{n}"
        subprocess.run([sys.executable, str(here / "schema_gen.py"), str(n), str(crate), str(core),
                        flavour], check=True)
        crates[flavour] = (crate, f"gen-{flavour}-{n}")
        # Dependencies first, for both commands.
        for command in commands:
            cargo(crate, command)
    # Runs interleaved (orm, diesel, orm, ...), so that both see the same machine: a noisy
    # neighbour slows one run of each rather than every run of one.
    times, peaks = {}, {}
    for _ in range(args.runs):
        for command in commands:
            for flavour in flavours:
                seconds, peak = measure_once(*crates[flavour], command)
                times.setdefault((flavour, command), []).append(seconds)
                if peak:
                    peaks.setdefault((flavour, command), []).append(peak)
    result = {key: (statistics.median(values), max(peaks.get(key, [0])) or None)
              for key, values in times.items()}
    for flavour in flavours:
        print(f"N = {n} {flavour}: " + ", ".join(
            f"{command} {fmt(result[flavour, command][0])}" for command in commands),
            file=sys.stderr)
    rows.append((n, result))

print("| N models | `cargo check` orm-core | diesel | ratio | debug build orm-core | diesel | ratio | peak rustc orm-core / diesel |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for n, r in rows:
    if ("diesel", "check") not in r or ("orm", "check") not in r:
        continue
    check = (r["orm", "check"][0], r["diesel", "check"][0])
    cells = [str(n), fmt(check[0]), fmt(check[1]), f"{check[0] / check[1]:.2f}x"]
    if ("orm", "build") in r:
        build = (r["orm", "build"][0], r["diesel", "build"][0])
        cells += [fmt(build[0]), fmt(build[1]), f"{build[0] / build[1]:.2f}x"]
        peaks = (r["orm", "build"][1], r["diesel", "build"][1])
    else:
        cells += ["-", "-", "-"]
        peaks = (r["orm", "check"][1], r["diesel", "check"][1])
    cells.append(" / ".join(f"{p // 1024} MB" if p else "-" for p in peaks))
    print("| " + " | ".join(cells) + " |")
