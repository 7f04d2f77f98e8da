//! Repository rules checked as tests: every Rust file of every crate says what it owns in a
//! `//!` header, and imports inside the `push` crate point one way (down the layer table
//! below), with no cycle between files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in [
        "src",
        "protocol/src",
        "repl/src",
        "lsp/src",
        "pyclient/src",
        "tests",
    ] {
        let before = files.len();
        rust_files(&root().join(dir), &mut files);
        assert!(files.len() > before, "no Rust files found under {dir}");
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header saying what they own: {missing:?}"
    );
}

/// The layers of `src/`, highest first: a module may import its own layer or any lower one.
/// The most specific prefix wins (`assemble` sits above the edge, `node` below `ops`). Matches DESIGN.md invariant 8 and ARCHITECTURE.md.
const LAYERS: &[(&str, u8)] = &[
    ("main", 8),
    ("cli", 8),
    ("assemble", 7),
    ("server", 6),
    ("tasks", 6),
    ("ops", 5),
    ("node", 4),
    ("config", 4),
    ("workers", 4),
    ("runtime", 3),
    ("consensus", 3),
    ("model", 2),
    // Leaves anyone may use: counters, the log ring, process stats, the clock, shutdown.
    ("metrics", 1),
    ("logs", 1),
    ("procstat", 1),
    ("clock", 1),
    ("shutdown", 1),
    ("join", 1),
];

/// Imports that the ranks alone allow but that must not exist.
const NEVER: &[(&str, &str, &str)] = &[
    (
        "tasks",
        "server",
        "decisions go through the node, not the edge",
    ),
    ("server", "tasks", "the edge does not decide placement"),
    ("model", "clock", "apply takes times from the command"),
    (
        "runtime",
        "consensus",
        "Python reaches the cluster through its Cluster interface",
    ),
    ("consensus", "runtime", "openraft glue knows no Python"),
    (
        "workers",
        "node",
        "the worker pool gets the cluster as an interface at assembly",
    ),
    ("node", "assemble", "the node never imports its assembly"),
];

/// The module path of a file under `src/` (`src/ops/kv.rs` → `ops::kv`).
fn module_of(rel: &str) -> String {
    let rel = rel.trim_start_matches("src/").trim_end_matches(".rs");
    let rel = rel.trim_end_matches("/mod");
    if rel == "lib" {
        String::new()
    } else {
        rel.replace('/', "::")
    }
}

fn layer_of(module: &str) -> Option<(&'static str, u8)> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .copied()
}

/// The code of a file without comments and without its `#[cfg(test)]` module (tests may
/// build fixtures from any layer).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path a file refers to: `crate::a::b`, `super::x`, names inside
/// `use crate::{a, b::c}` groups, and a `mod.rs` file's references to its own children.
fn references(module: &str, code: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    let parent = match module.rfind("::") {
        Some(i) => module[..i].to_string(),
        None => String::new(),
    };
    let join = |base: &str, rest: &str| {
        if base.is_empty() {
            rest.to_string()
        } else {
            format!("{base}::{rest}")
        }
    };
    // Paths after `crate::` or `super::`.
    for (start, base) in [("crate::", String::new()), ("super::", parent.clone())] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && code[..at].ends_with(|c: char| ident(c) || c == ':') {
                continue; // `super::super::` handled as its own match; `x::crate::` never
            }
            let rest = &code[from..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`: one reference per item.
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let item: String = item
                        .trim()
                        .chars()
                        .take_while(|c| ident(*c) || *c == ':')
                        .collect();
                    if !item.is_empty() && item != "self" {
                        out.insert(join(&base, item.trim_end_matches(':')));
                    }
                }
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| ident(*c) || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            if !path.is_empty() && !path.starts_with("super") {
                out.insert(join(&base, path));
            }
        }
    }
    out
}

/// Children a `mod.rs` (or `lib.rs`) declares, so bare `child::x` paths count as references.
fn children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("pub ");
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// Imports that go up the layer table or that [`NEVER`] forbids, as readable lines.
fn upward_imports(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut bad = Vec::new();
    for (module, code) in files {
        let Some((from_layer, from_rank)) = layer_of(module) else {
            continue;
        };
        for target in references(module, code) {
            let Some((to_layer, to_rank)) = layer_of(&target) else {
                continue; // an item of the crate root (a shared constant)
            };
            if to_rank > from_rank {
                bad.push(format!(
                    "{module} ({from_layer}) imports {target} ({to_layer}), a higher layer"
                ));
            }
            for (from, to, why) in NEVER {
                if *from == from_layer && *to == to_layer {
                    bad.push(format!("{module} imports {target}: never ({why})"));
                }
            }
        }
    }
    bad
}

/// The file a module path lands in: the longest known module that prefixes it.
fn file_of<'a>(target: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    modules
        .iter()
        .filter(|m| {
            !m.is_empty() && (target == m.as_str() || target.starts_with(&format!("{m}::")))
        })
        .max_by_key(|m| m.len())
}

/// One cycle between files (module paths), if there is one.
///
/// A child naming its own parent module (`super::Type` of a type its `mod.rs` defines, as
/// `consensus::log_store` uses `TypeConfig`) is one module split over files, not an edge;
/// every other reference is: siblings, cousins, and a parent's calls into its children.
fn find_cycle(files: &BTreeMap<String, String>) -> Option<Vec<String>> {
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut edges: BTreeMap<&String, BTreeSet<&String>> = BTreeMap::new();
    for (module, code) in files {
        let mut targets = references(module, code);
        for child in children(code) {
            if code.contains(&format!("{child}::")) {
                let full = if module.is_empty() {
                    child.clone()
                } else {
                    format!("{module}::{child}")
                };
                targets.insert(format!("{full}::_"));
            }
        }
        let parent = module.rfind("::").map_or("", |i| &module[..i]);
        let set = edges.entry(module).or_default();
        for t in targets {
            if let Some(f) = file_of(&t, &modules) {
                if f != module && f != parent {
                    set.insert(f);
                }
            }
        }
    }
    // Depth-first search with colours; the grey stack is the cycle when an edge meets it.
    fn visit<'a>(
        at: &'a String,
        edges: &BTreeMap<&'a String, BTreeSet<&'a String>>,
        done: &mut BTreeSet<&'a String>,
        stack: &mut Vec<&'a String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|m| *m == at) {
            let mut cycle: Vec<String> = stack[i..].iter().map(|m| m.to_string()).collect();
            cycle.push(at.clone());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        stack.push(at);
        for next in edges.get(at).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(at);
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(c) = visit(m, &edges, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// Every file of `src/`, by module path, with comments and tests stripped.
fn crate_sources() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files
        .iter()
        .map(|f| {
            let rel = f
                .strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(f).expect("readable source");
            (module_of(&rel), code_of(&text))
        })
        .collect()
}

#[test]
fn imports_point_down_the_layers() {
    let files = crate_sources();
    let unplaced: Vec<&String> = files
        .keys()
        .filter(|m| !m.is_empty() && layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from the layer table in tests/it/tidy.rs: {unplaced:?}"
    );
    let bad = upward_imports(&files);
    assert!(bad.is_empty(), "imports that point up:\n{}", bad.join("\n"));
}

#[test]
fn no_cycle_between_files() {
    let files = crate_sources();
    assert!(files.len() > 40, "found too few files: {}", files.len());
    if let Some(cycle) = find_cycle(&files) {
        panic!("an import cycle between files: {}", cycle.join(" -> "));
    }
}

fn example(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(path, text)| (module_of(path), code_of(text)))
        .collect()
}

#[test]
fn the_checks_catch_a_planted_upward_import_and_cycle() {
    let good = example(&[
        (
            "src/ops/kv.rs",
            "use super::leader;\nuse crate::node::Node;\n",
        ),
        ("src/ops/leader.rs", "use crate::model::{Applied, State};\n"),
        ("src/node/mod.rs", "use crate::consensus::Raft;\n"),
        (
            "src/assemble.rs",
            "use crate::server::{self, auth};\nuse crate::node::Node;\n",
        ),
        (
            "src/model/mod.rs",
            "// crate::node::Node in a comment is fine\n",
        ),
    ]);
    assert!(
        upward_imports(&good).is_empty(),
        "{:?}",
        upward_imports(&good)
    );
    assert_eq!(find_cycle(&good), None);

    // The node reaching up into the ops layer, and the model into the node (in a group).
    let bad = example(&[
        ("src/node/mod.rs", "fn f() { crate::ops::handle(); }\n"),
        (
            "src/model/kv.rs",
            "use crate::{clock::now_ms, node::Node};\n",
        ),
        ("src/tasks/mod.rs", "use crate::server::http;\n"),
    ]);
    let found = upward_imports(&bad);
    assert!(
        found
            .iter()
            .any(|l| l.contains("node (node) imports ops::handle (ops)")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|l| l.contains("model::kv (model) imports node::Node")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|l| l.contains("model::kv imports clock::now_ms: never")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|l| l.contains("tasks imports server::http: never")),
        "{found:?}"
    );

    // Three files of one layer importing round, one through a parent's child path.
    let cycle = example(&[
        ("src/ops/mod.rs", "pub mod kv;\nfn r() { kv::get(); }\n"),
        ("src/ops/kv.rs", "use super::leader::{self, Req};\n"),
        ("src/ops/leader.rs", "fn f() { crate::ops::kv::get(); }\n"),
    ]);
    assert_eq!(
        find_cycle(&cycle),
        Some(vec![
            "ops::kv".to_string(),
            "ops::leader".into(),
            "ops::kv".into()
        ])
    );
    // A child using its parent's type is one module split over files.
    let split = example(&[
        (
            "src/consensus/mod.rs",
            "pub mod log_store;\nfn s() { log_store::open(); }\n",
        ),
        ("src/consensus/log_store.rs", "use super::TypeConfig;\n"),
    ]);
    assert_eq!(find_cycle(&split), None);
}
