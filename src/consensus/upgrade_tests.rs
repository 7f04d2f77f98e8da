//! The golden fixtures of the formats (`tests/fixtures/format-N/data`, data dirs written by
//! the last release of each: format 1 is bincode without headers, formats 2 and up postcard
//! with headers): each older one opens, upgrades in place with its contents intact, and a
//! crash at any point of the upgrade leaves a data dir that still opens with the same
//! contents; the current format's own fixture opens as it is.

use std::path::{Path, PathBuf};

use openraft::storage::RaftLogStorage;
use openraft::{EntryPayload, RaftLogReader};
use push_protocol::{Value, FORMAT_VERSION};

use super::format::{self, LOG_MAGIC, SNAPSHOT_MAGIC};
use super::{LogStore, StateMachineStore};
use crate::model::settings::SettingKind;
use crate::model::{self, State};

/// The formats with a fixture of their own data dir.
const FIXTURES: [u32; 3] = [1, 2, 3];

fn fixture(format: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/format-{format}/data"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// What a node would serve after opening `dir`: the snapshot plus the committed entries.
async fn open_state(dir: &Path) -> (State, super::blobs::BlobStore) {
    format::check_data_dir(dir).expect("readable formats");
    let mut log = LogStore::open(&dir.join("log")).expect("open the log");
    let sm = StateMachineStore::open(&dir.join("state")).expect("open the snapshot");
    let applier = sm.shared().read().clone();
    let store = sm.shared().blobs().clone();
    let mut state = applier.state;
    let from = applier.last_applied.map_or(0, |l| l.index + 1);
    let committed = log.read_committed().await.expect("committed");
    let committed = committed.expect("a committed index").index;
    let entries = log
        .try_get_log_entries(from..=committed)
        .await
        .expect("entries");
    for entry in entries {
        if let EntryPayload::Normal(command) = &entry.payload {
            let inline = super::blobs::inline_pieces(&state, std::iter::once(&command.op));
            super::blobs::store_for(&store, &command.op, &inline).expect("blob files");
            model::apply(&mut state, command);
        }
    }
    (state, store)
}

/// Everything `scripts/fixtures/make-format.sh` wrote for `format`.
fn check_contents((state, store): &(State, super::blobs::BlobStore), format: u32) {
    let kv = |map: &str, key: &str| state.kv.get(map, key).cloned();
    assert_eq!(kv("settings", "greeting"), Some(Value::Str("hello".into())));
    assert_eq!(
        kv("settings", "after-snapshot"),
        Some(Value::Str("yes".into()))
    );
    assert!(matches!(kv("settings", "limits"), Some(Value::Dict(d)) if d.len() == 2));
    for i in 1..=40 {
        assert_eq!(kv("counts", &format!("k{i}")), Some(Value::Int(i)), "k{i}");
    }
    assert_eq!(state.code.heads(), vec![("main".to_string(), 2)]);
    let app = state.code.app("main").expect("app main");
    assert_eq!(app.versions.len(), 2);
    for (number, text) in [(1, "\"v1\""), (2, "\"v2\"")] {
        let version = app.version(number).expect("version");
        let hash = version.tree.get("app.py").expect("app.py");
        // Small blobs held in the state before format 4 stay there, now with their sizes.
        let source = state.code.inline_bytes(hash).expect("inline blob").to_vec();
        assert!(!store.has(hash), "a small blob became a file");
        assert_eq!(state.code.blob_size(hash), Some(source.len() as u64));
        assert!(String::from_utf8_lossy(&source).contains(text));
    }
    let now = state.queues.clock();
    let jobs = state.queues.get("jobs").expect("queue jobs");
    assert_eq!((jobs.ready_count(now), jobs.leased_count(now)), (2, 1));
    assert_eq!(state.timeseries.get("temps").expect("series").len(), 2);
    assert_eq!(state.audit.query(0, 100, Some("deploy")).len(), 2);
    // Users arrived in format 2.
    let users: Vec<_> = state.users.list().into_iter().map(|u| u.name).collect();
    let expected = if format >= 2 {
        vec!["fixture-operator".to_string()]
    } else {
        vec![]
    };
    assert_eq!(users, expected, "format {format}");
    if format < 3 {
        return;
    }
    // Realms, secrets and config arrived in format 3.
    assert_eq!(
        kv("other\u{1f}settings", "greeting"),
        Some(Value::Str("hi from other".into()))
    );
    let secret = state
        .settings
        .get("main", SettingKind::Secret, "api-key")
        .expect("secret api-key");
    assert_eq!(secret.0, "fixture-secret-value");
    let config = state.settings.get("main", SettingKind::Config, "mode");
    assert_eq!(config.map(|v| v.0.as_str()), Some("fast"));
    if format < 4 {
        return;
    }
    // Blob files and channels arrived in format 4: v2 holds a blob over 64 KiB as a file.
    let v2 = app.version(2).expect("v2");
    let hash = v2.tree.get("static/big.bin").expect("static/big.bin");
    let pattern: Vec<u8> = (0..65_600u32).map(|i| (i % 251) as u8).collect();
    assert!(
        state.code.inline_bytes(hash).is_none(),
        "a large blob held inline"
    );
    assert_eq!(state.code.blob_size(hash), Some(pattern.len() as u64));
    assert_eq!(store.read(hash).expect("the blob file"), pattern);
    let news = state.channels.since("main", "news", 0, 10);
    let data: Vec<_> = news.events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["first", "{\"n\": 2}"]);
}

/// The fixture of the format this release writes (recorded by the release that shipped it)
/// opens as it is: nothing to migrate, contents intact, files unchanged.
#[tokio::test]
async fn the_current_formats_fixture_opens_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&fixture(FORMAT_VERSION), dir.path());
    let (log, snapshot) = (
        dir.path().join("log/raft.log"),
        dir.path().join("state/snapshot.bin"),
    );
    let before = (
        std::fs::read(&log).unwrap(),
        std::fs::read(&snapshot).unwrap(),
    );
    assert!(current(&log, LOG_MAGIC) && current(&snapshot, SNAPSHOT_MAGIC));
    check_contents(&open_state(dir.path()).await, FORMAT_VERSION);
    assert_eq!(std::fs::read(&snapshot).unwrap(), before.1);
    assert_eq!(std::fs::read(&log).unwrap(), before.0);
}

/// Whether the file at `path` is in the current format (its header says so).
fn current(path: &Path, magic: [u8; 8]) -> bool {
    let bytes = std::fs::read(path).expect("read");
    bytes.starts_with(&magic) && bytes.get(8..12) == Some(&FORMAT_VERSION.to_le_bytes()[..])
}

#[tokio::test]
async fn older_fixtures_upgrade_in_place() {
    for format in FIXTURES {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&fixture(format), dir.path());
        let (log, snapshot) = (
            dir.path().join("log/raft.log"),
            dir.path().join("state/snapshot.bin"),
        );
        assert!(!current(&log, LOG_MAGIC) && !current(&snapshot, SNAPSHOT_MAGIC));

        check_contents(&open_state(dir.path()).await, format);
        assert!(current(&log, LOG_MAGIC) && current(&snapshot, SNAPSHOT_MAGIC));
        let upgraded = (
            std::fs::read(&log).unwrap(),
            std::fs::read(&snapshot).unwrap(),
        );

        // Opening an upgraded dir changes nothing and reads the same.
        check_contents(&open_state(dir.path()).await, format);
        assert_eq!(std::fs::read(&log).unwrap(), upgraded.0);
        assert_eq!(std::fs::read(&snapshot).unwrap(), upgraded.1);
    }
}

/// The states a kill -9 can leave: a half-written file beside the old one, or one file
/// renamed and the other not yet.
#[tokio::test]
async fn a_crash_during_the_upgrade_leaves_a_loadable_data_dir() {
    for format in FIXTURES {
        let done = tempfile::tempdir().expect("temp dir");
        copy_dir(&fixture(format), done.path());
        open_state(done.path()).await;
        let new_log = std::fs::read(done.path().join("log/raft.log")).unwrap();
        let new_snapshot = std::fs::read(done.path().join("state/snapshot.bin")).unwrap();

        for case in ["half-written", "log done", "snapshot done"] {
            let dir = tempfile::tempdir().expect("temp dir");
            copy_dir(&fixture(format), dir.path());
            match case {
                "half-written" => {
                    let half = |b: &[u8]| b[..b.len() / 2].to_vec();
                    std::fs::write(dir.path().join("log/raft.log.migrating"), half(&new_log))
                        .unwrap();
                    std::fs::write(
                        dir.path().join("state/snapshot.bin.migrating"),
                        half(&new_snapshot),
                    )
                    .unwrap();
                }
                "log done" => std::fs::write(dir.path().join("log/raft.log"), &new_log).unwrap(),
                _ => std::fs::write(dir.path().join("state/snapshot.bin"), &new_snapshot).unwrap(),
            }
            check_contents(&open_state(dir.path()).await, format);
            let what = format!("format {format}, {case}");
            assert!(
                current(&dir.path().join("log/raft.log"), LOG_MAGIC),
                "{what}"
            );
            assert!(
                current(&dir.path().join("state/snapshot.bin"), SNAPSHOT_MAGIC),
                "{what}"
            );
        }
    }
}
