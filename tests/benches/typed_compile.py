#!/usr/bin/env python3
"""Compile-time cost of the typed loaded state: N typed queries against N untyped ones.

Generates two throwaway crates under target/typed-compile/ that depend on orm-core and
orm-examples, each with N functions running a nested query of two or three options:

- typed: tuple options (the state fold), results read through `Has`-bounded functions and
  `Loaded::get` (the trait checks);
- untyped: the same options through `Options::new().with(..)` (no fold, the bare state), results
  read through the runtime `Rel::get`.

Then `cargo check`s each crate's own code (its dependencies are built first, once) RUNS times and
prints the medians. Usage: python3 tests/benches/typed_compile.py [N] [RUNS]
"""

import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "typed-compile"

SHAPES = [
    (
        "(joined(Person::address), selectin(Person::reports).then(joined(Person::address)))",
        ["city(&p)", "report_cities(&p)"],
    ),
    (
        "(selectin(Person::projects), joined(Person::manager).then(joined(Person::address)))",
        ["projects(&p)", "manager_city(&p)"],
    ),
    (
        "(selectin(Person::reports).then(joined(Person::address)), joined(Person::address), raise(Person::manager))",
        ["city(&p)", "report_cities(&p)"],
    ),
]

TYPED_HELPERS = """
fn city(p: &Loaded<Person, impl Has<person_rel::address>>) -> usize {
    p.get(Person::address).map_or(0, |a| a.city.len())
}
fn report_cities(
    p: &Loaded<Person, impl Has<person_rel::reports, Inner: Has<person_rel::address>>>,
) -> usize {
    p.get(Person::reports).iter().map(city).sum()
}
fn projects(p: &Loaded<Person, impl Has<person_rel::projects>>) -> usize {
    p.get(Person::projects).len()
}
fn manager_city(
    p: &Loaded<Person, impl Has<person_rel::manager, Inner: Has<person_rel::address>>>,
) -> usize {
    p.get(Person::manager).map_or(0, city)
}
"""

UNTYPED_HELPERS = """
fn city(p: &Person) -> usize {
    p.address.get().flatten().map_or(0, |a| a.city.len())
}
fn report_cities(p: &Person) -> usize {
    p.reports.get().unwrap_or_default().iter().map(|r| city(r)).sum()
}
fn projects(p: &Person) -> usize {
    p.projects.get().map_or(0, |p| p.len())
}
fn manager_city(p: &Person) -> usize {
    p.manager.get().flatten().map_or(0, city)
}
"""


def options_chain(options: str) -> str:
    """`(a, b, c)` as `Options::new().with(a).with(b).with(c)`, splitting at top-level commas."""
    inner, depth, parts, current = options[1:-1], 0, [], ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += ch in "(["
        depth -= ch in ")]"
        current += ch
    parts.append(current.strip())
    return "Options::new()" + "".join(f".with({p})" for p in parts)


def crate(kind: str, n: int) -> pathlib.Path:
    path = OUT / kind
    (path / "src").mkdir(parents=True, exist_ok=True)
    (path / "Cargo.toml").write_text(
        f"""[package]
name = "typed-compile-{kind}"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
diesel = {{ version = "2.3", default-features = false, features = ["sqlite"] }}
orm-core = {{ path = "{ROOT / 'orm-core'}" }}
orm-examples = {{ path = "{ROOT / 'examples'}" }}
"""
    )
    lines = [
        "#![allow(dead_code, unused_imports)]",
        "use diesel::SqliteConnection;",
        "use orm_core::prelude::*;",
        "use orm_examples::{person_rel, Person};",
        TYPED_HELPERS if kind == "typed" else UNTYPED_HELPERS,
    ]
    for i in range(n):
        options, reads = SHAPES[i % len(SHAPES)]
        if kind == "untyped":
            options = options_chain(options)
        body = " + ".join(reads)
        lines.append(
            f"""pub fn q{i}(s: &mut Session<'_, SqliteConnection>) -> orm_core::Result<usize> {{
    let people = Person::query().options({options}).load(s)?;
    Ok(people.iter().map(|p| {body}).sum())
}}"""
        )
    (path / "src" / "lib.rs").write_text("\n".join(lines) + "\n")
    return path


def compile(path: pathlib.Path, command: str) -> float:
    env = dict(os.environ, CARGO_TARGET_DIR=str(OUT / "target"))
    (path / "src" / "lib.rs").touch()
    start = time.perf_counter()
    subprocess.run(["cargo", command, "-q"], cwd=path, env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    crates = {kind: crate(kind, n) for kind in ("untyped", "typed")}
    for command in ("check", "build"):
        for path in crates.values():
            compile(path, command)  # dependencies, once
        medians = {}
        for kind, path in crates.items():
            medians[kind] = statistics.median(compile(path, command) for _ in range(runs))
            print(f"cargo {command}, {kind:>7}: median {medians[kind]:.2f} s ({n} queries, {runs} runs)")
        extra = (medians["typed"] - medians["untyped"]) / n * 1e3
        print(f"cargo {command}, typed - untyped: {extra:+.2f} ms per query")


if __name__ == "__main__":
    main()
