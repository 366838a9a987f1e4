//! Compile-fail tests: every mistake `#[derive(Model)]` or the typed options can report, with
//! its message snapshot in `tests/ui/<topic>/<mistake>.stderr` (bless with `TRYBUILD=overwrite`).

// The snapshots are the SQLite-only build's: with `postgres`, each backend's check adds its line.
#[cfg(not(feature = "postgres"))]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*/*.rs");
}
