//! The crate's modules depend on each other in one direction (docs/design.md, "Modules"): this
//! test reads every source file and fails on a `crate::` path that points to a higher layer.

use std::collections::HashMap;
use std::path::Path;

/// The layers, bottom first. A module may name modules of its own layer or below.
const LAYERS: &[&[&str]] = &[
    // Foundations.
    &["error", "stats"],
    // Keys.
    &["key"],
    // The static model and its store: one type-level system, cycles inside are fine.
    &["model", "rel", "state", "graph", "identity", "ident"],
    // Dialects and options.
    &["backend", "options", "shaping"],
    // Plans and SQL.
    &["plan", "sql", "join", "detect"],
    // Execution.
    &["loader"],
    // The façade.
    &["session", "query", "lib", "__private", "layers"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The module each item re-exported at the crate root comes from (`crate::Query` is `query`).
fn root_items(lib: &str) -> HashMap<String, String> {
    let mut items = HashMap::new();
    for export in lib.split("pub use crate::").skip(1) {
        let export = &export[..export.find(';').unwrap_or(export.len())];
        let module = export.split("::").next().unwrap_or_default();
        // `pub use crate::{..}` (the prelude) re-exports the root's own items.
        if !module.chars().all(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let names = export.rsplit("::").next().unwrap_or_default();
        for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !name.is_empty() {
                items.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    items
}

/// The modules `source` names through `crate::` paths, outside comments and tests (`$crate::`
/// in a macro's body names the crate from the user's side, not a dependency).
fn named(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut named = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before == Some('$') || before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            named.push(rest[..end].to_owned());
        }
    }
    named
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn modules_depend_on_lower_layers_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs is readable");
    let items = root_items(&lib);
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found the sources: {}", files.len());
    let mut up = Vec::new();
    for (path, text) in &files {
        let relative = path.rsplit_once("src/").map_or(path.as_str(), |(_, r)| r);
        let module = relative.split(['/', '.']).next().unwrap_or_default();
        let Some(own) = layer_of(module) else {
            up.push(format!("{relative}: module `{module}` is in no layer"));
            continue;
        };
        for name in named(text) {
            let target = items.get(&name).cloned().unwrap_or(name);
            match layer_of(&target) {
                Some(layer) if layer > own => {
                    up.push(format!("{relative}: `{module}` names `{target}`, a higher layer"));
                }
                _ => {}
            }
        }
    }
    up.sort();
    up.dedup();
    assert!(up.is_empty(), "imports pointing up:\n{}", up.join("\n"));
}
