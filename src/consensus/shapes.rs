//! The shape test: fails when a stored or wire type changes shape while `FORMAT_VERSION`
//! stays the same, so that the change shows up here instead of in someone's data dir.
//!
//! The shape of the types is read from their definitions: every item deriving `Serialize` or
//! `Deserialize` in the files that define stored and wire types (the protocol's messages,
//! records and values; the model; the log record, snapshot and peer messages), without
//! comments and with whitespace collapsed, plus the openraft version (its `Entry`, `Vote`,
//! `LogId`, membership and RPC types are inside the log, snapshots and peer messages). A
//! tracer of serde's data model (serde-reflection) was tried first: it cannot tell apart the
//! several `Result<_, _>` instantiations inside `Reply` and the peer replies. Reading the
//! definitions is stricter than the wire needs (renaming a type changes nothing on the wire
//! but fails here): then record the change with a bump all the same.
//!
//! `tests/fixtures/shapes/format-N.txt` holds the shapes of format N. It is written once,
//! when format N is introduced (`PUSH_RECORD_SHAPES=1 cargo test --lib shapes`), and never
//! rewritten: a change of shape bumps `FORMAT_VERSION` (protocol/src/format), keeps the old
//! format readable, adds `tests/fixtures/format-N/` and records the new shapes.

use std::path::{Path, PathBuf};

use push_protocol::FORMAT_VERSION;

/// Files whose serde types are stored or sent.
const FILES: [&str; 21] = [
    "protocol/src/message.rs",
    "protocol/src/debug.rs",
    "protocol/src/records.rs",
    "protocol/src/value.rs",
    "src/model/audit.rs",
    "src/model/channels.rs",
    "src/model/code_store.rs",
    "src/model/command.rs",
    "src/model/kv.rs",
    "src/model/mod.rs",
    "src/model/queue.rs",
    "src/model/registry.rs",
    "src/model/settings.rs",
    "src/model/spec.rs",
    "src/model/tasks.rs",
    "src/model/timeseries.rs",
    "src/consensus/backup.rs",
    "src/consensus/log_file.rs",
    "src/consensus/network.rs",
    "src/consensus/snapshot_file.rs",
    "src/consensus/state_machine.rs",
];

/// Removes `//` comments (the crate's sources put none inside string literals of type
/// definitions) and collapses whitespace.
fn normalise(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The serde items of one source file: from each `#[derive(..Serialize..)]` to the end of the
/// item it derives for (its matching closing brace, or the `;` of a tuple or unit struct).
fn serde_items(source: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("#[derive(") {
        let tail = &rest[at..];
        let derive_end = tail.find(")]").map_or(tail.len(), |e| e + 2);
        let derive = &tail[..derive_end];
        if !(derive.contains("Serialize") || derive.contains("Deserialize")) {
            rest = &tail[derive_end..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = tail.len();
        for (i, c) in tail.char_indices().skip(derive_end) {
            match c {
                '{' | '(' => depth += 1,
                '}' | ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && c == '}' {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        items.push(normalise(&tail[..end]));
        rest = &tail[end..];
    }
    items
}

fn openraft_version(root: &Path) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
    let at = lock
        .find("name = \"openraft\"")
        .expect("openraft in Cargo.lock");
    lock[at..].lines().nth(1).unwrap_or_default().to_string()
}

/// The shapes of this source tree, as text.
fn shapes(root: &Path) -> String {
    let mut out = format!("openraft {}\n", openraft_version(root));
    for file in FILES {
        let source = std::fs::read_to_string(root.join(file)).expect("source file");
        // Types of a file's own tests are not stored or sent.
        let source = source
            .split("\n#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        out.push_str(&format!("\n# {file}\n"));
        for item in serde_items(source) {
            out.push_str(&item);
            out.push('\n');
        }
    }
    out
}

fn recorded(root: &Path, version: u32) -> PathBuf {
    root.join(format!("tests/fixtures/shapes/format-{version}.txt"))
}

#[test]
fn items_are_cut_at_their_end() {
    let source = "#[derive(Clone)]\nstruct A;\n#[derive(Serialize)]\npub struct B { x: Vec<(u8, u8)>, // c\n y: u8 }\nfn f() {}\n#[derive(Deserialize)]\nstruct C(u8);\n#[derive(Serialize)]\nenum D { E { f: u8 }, G(u8) }";
    assert_eq!(
        serde_items(source),
        vec![
            "#[derive(Serialize)] pub struct B { x: Vec<(u8, u8)>, y: u8 }",
            "#[derive(Deserialize)] struct C(u8);",
            "#[derive(Serialize)] enum D { E { f: u8 }, G(u8) }",
        ]
    );
}

#[test]
fn shapes_match_the_current_format_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let now = shapes(root);
    assert!(now.contains("pub enum Op {") && now.contains("pub struct NodeStatus {"));
    assert!(now.contains("pub struct State {") && now.contains("pub enum RaftRpc {"));
    let path = recorded(root, FORMAT_VERSION);
    let Ok(then) = std::fs::read_to_string(&path) else {
        if std::env::var_os("PUSH_RECORD_SHAPES").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &now).expect("write shapes");
            return;
        }
        panic!(
            "no shapes recorded for format {FORMAT_VERSION} ({}); a new format records its shapes once: PUSH_RECORD_SHAPES=1 cargo test --lib shapes",
            path.display()
        );
    };
    if now != then {
        let changed = now
            .lines()
            .zip(then.lines())
            .find(|(a, b)| a != b)
            .map_or_else(
                || "items added or removed".to_string(),
                |(a, _)| a.to_string(),
            );
        panic!(
            "a stored or wire type changed shape, but FORMAT_VERSION is still {FORMAT_VERSION} ({} differs): {changed}\n\
             Bump FORMAT_VERSION in protocol/src/format, keep format {FORMAT_VERSION} readable there and in consensus::format, \
             add tests/fixtures/format-{}/ and record the new shapes (PUSH_RECORD_SHAPES=1 cargo test --lib shapes).",
            path.display(),
            FORMAT_VERSION + 1,
        );
    }
}
