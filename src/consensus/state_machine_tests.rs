//! Unit tests of the state machine's snapshots: crashes mid-build, cut transfers, snapshots
//! handed out while others are published ([`super`]).

use std::collections::BTreeMap;

use openraft::{CommittedLeaderId, RaftSnapshotBuilder};

use super::*;
use crate::model::{Command, CommandOp};

fn set(key: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), key.len() as u64),
        payload: EntryPayload::Normal(Command {
            time_ms: 1,
            op: CommandOp::KvSet {
                map: "m".into(),
                key: key.into(),
                value: push_protocol::Value::Int(1),
            },
        }),
    }
}

/// What a kill -9 in the middle of a build, an install or a transfer leaves (a partial
/// file beside the snapshot) changes nothing: the previous snapshot loads, and the
/// partial files are gone.
#[tokio::test]
async fn a_crash_while_building_or_installing_leaves_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    sm.apply([set("a"), set("bb")]).await.unwrap();
    let built = sm.build_snapshot().await.unwrap();
    let whole = std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
    drop(sm);
    for leftover in [BUILDING, INSTALLING, INCOMING] {
        std::fs::write(dir.path().join(leftover), &whole[..whole.len() / 2]).unwrap();
    }
    let sm = StateMachineStore::open(dir.path()).unwrap();
    let applied = sm.shared().read().last_applied;
    assert_eq!(applied, built.meta.last_log_id);
    assert!(sm.shared().read().state.kv.get("m", "bb").is_some());
    for leftover in [BUILDING, INSTALLING, INCOMING] {
        assert!(!dir.path().join(leftover).exists(), "{leftover}");
    }
}

/// A transfer cut short is refused by the install, and the snapshot before it stays.
#[tokio::test]
async fn a_cut_transfer_is_refused_and_installs_nothing() {
    use tokio::io::AsyncWriteExt;
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = StateMachineStore::open(from.path()).unwrap();
    leader.apply([set("a"), set("bb")]).await.unwrap();
    let built = leader.build_snapshot().await.unwrap();
    let bytes = std::fs::read(from.path().join(SNAPSHOT_FILE)).unwrap();
    let state = &bytes[state_at(&from.path().join(SNAPSHOT_FILE)).unwrap() as usize..];

    let mut follower = StateMachineStore::open(to.path()).unwrap();
    let mut data = follower.begin_receiving_snapshot().await.unwrap();
    data.write_all(&state[..state.len() - 3]).await.unwrap();
    data.flush().await.unwrap();
    let err = data.check("the cut one").await.unwrap_err().to_string();
    assert!(err.contains("truncated after byte"), "{err}");
    assert!(follower.install_snapshot(&built.meta, data).await.is_err());
    assert!(follower.shared().read().last_applied.is_none());
    assert!(!to.path().join(SNAPSHOT_FILE).exists());

    // The whole transfer installs, and survives a reopen.
    let mut data = follower.begin_receiving_snapshot().await.unwrap();
    data.write_all(state).await.unwrap();
    data.flush().await.unwrap();
    data.check("the whole one").await.unwrap();
    follower.install_snapshot(&built.meta, data).await.unwrap();
    drop(follower);
    let reopened = StateMachineStore::open(to.path()).unwrap();
    assert_eq!(
        reopened.shared().read().last_applied,
        built.meta.last_log_id
    );
    assert!(reopened.shared().read().state.kv.get("m", "a").is_some());
}

/// Reads a handed-out snapshot whole and returns the index its state bytes were applied
/// at.
async fn applied_in(snapshot: Snapshot<TypeConfig>) -> Option<LogId<u64>> {
    let (mut file, start) = snapshot.snapshot.into_std().await;
    let (applier, _) = snapshot_file::read_state(&mut file, start, "handed out").unwrap();
    applier.last_applied
}

/// Snapshots handed out while others are built hold the state their meta names: the
/// file is opened under the lock that publishes a new one (a leader once sent a late
/// joiner the old meta's offset into the new file, which it could not decode).
#[tokio::test]
async fn a_snapshot_handed_out_during_builds_matches_its_meta() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    sm.apply([set("a")]).await.unwrap();
    sm.build_snapshot().await.unwrap();
    let mut builder = sm.get_snapshot_builder().await;
    let builds = tokio::spawn(async move {
        for _ in 0..40 {
            builder.build_snapshot().await.unwrap();
        }
    });
    for i in 0..200 {
        // Each build then holds another applied index (`set` indexes by key length).
        sm.apply([set(&"k".repeat(i + 2))]).await.unwrap();
        let snapshot = sm.get_current_snapshot().await.unwrap().unwrap();
        let meta = snapshot.meta.last_log_id;
        assert_eq!(applied_in(snapshot).await, meta);
        if builds.is_finished() {
            break;
        }
    }
    builds.await.unwrap();
}

/// A build that finishes after a newer snapshot was published leaves the newer one in
/// place, and the snapshot it returns still reads.
#[tokio::test]
async fn an_older_snapshot_published_late_leaves_the_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    sm.apply([set("a")]).await.unwrap();
    let older = sm.build_snapshot().await.unwrap();
    let older_file = dir.path().join("older");
    std::fs::copy(dir.path().join(SNAPSHOT_FILE), &older_file).unwrap();
    sm.apply([set("bbb")]).await.unwrap();
    let newer = sm.build_snapshot().await.unwrap();
    assert!(newer.meta.last_log_id > older.meta.last_log_id);

    let (file, late) = publish(&sm.current, dir.path(), &older_file, older.meta).unwrap();
    assert!(!older_file.exists());
    let mut file = file;
    let (applier, _) = snapshot_file::read_state(&mut file, late.state_at, "late").unwrap();
    assert_eq!(applier.last_applied, late.meta.last_log_id);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, newer.meta.last_log_id);
    assert_eq!(applied_in(current).await, newer.meta.last_log_id);
    assert_eq!(
        snapshot_file::read_snapshot(&dir.path().join(SNAPSHOT_FILE))
            .unwrap()
            .meta
            .last_log_id,
        newer.meta.last_log_id
    );
}

fn entry(index: u64, op: CommandOp) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command { time_ms: 1, op }),
    }
}

/// A blob of at most `INLINE_MAX` bytes stays in the state (no file), a larger one and a
/// joined one become files; both read back byte-identical after a restart and on a follower
/// that installs the snapshot, where again only the large ones are files.
#[tokio::test]
async fn small_blobs_stay_inline_and_large_ones_are_files_everywhere() {
    use crate::model::code_store::{blob_hash, INLINE_MAX};
    use push_protocol::ByteBuf;
    use tokio::io::AsyncWriteExt;
    let small = b"print('small')\n".to_vec();
    let large: Vec<u8> = (0..INLINE_MAX as usize + 1)
        .map(|i| (i % 251) as u8)
        .collect();
    let (piece, tail) = (vec![8u8; INLINE_MAX as usize + 5], vec![9u8; 10]);
    let joined = [&piece[..], &tail[..]].concat();
    let (s, l, p, t, j) = (
        blob_hash(&small),
        blob_hash(&large),
        blob_hash(&piece),
        blob_hash(&tail),
        blob_hash(&joined),
    );
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = StateMachineStore::open(from.path()).unwrap();
    let put = CommandOp::PutBlobs {
        blobs: [&small, &large, &piece, &tail]
            .iter()
            .map(|b| ByteBuf::from(b.to_vec()))
            .collect(),
    };
    let join = CommandOp::JoinBlob {
        hash: j.clone(),
        size: joined.len() as u64,
        pieces: vec![p.clone(), t.clone()],
    };
    // One batch: the join's small piece comes from the upload applied just before it.
    leader.apply([entry(1, put), entry(2, join)]).await.unwrap();
    let tree = BTreeMap::from([
        ("a.py".to_string(), s.clone()),
        ("big.bin".to_string(), l.clone()),
        ("joined.bin".to_string(), j.clone()),
    ]);
    let check = |shared: &SharedState, who: &str| {
        let files = shared.read_tree(tree.clone()).unwrap();
        assert_eq!(files["a.py"].to_vec(), small, "{who}");
        assert_eq!(files["big.bin"].to_vec(), large, "{who}");
        assert_eq!(files["joined.bin"].to_vec(), joined, "{who}");
        let state = &shared.read().state;
        assert!(state.code.inline_bytes(&s).is_some(), "{who}");
        assert!(!shared.blobs().has(&s), "{who}: the small blob is a file");
        assert!(state.code.inline_bytes(&l).is_none(), "{who}");
        assert!(shared.blobs().has(&l) && shared.blobs().has(&j), "{who}");
        assert!(
            !state.code.has_blob(&t),
            "{who}: the joined piece stays listed"
        );
        assert!(
            !state.code.has_blob(&p),
            "{who}: the joined piece stays listed"
        );
        let part = shared.read_blob_part(&s, 6, 5).unwrap();
        assert_eq!(part, b"'smal", "{who}");
    };
    check(&leader.shared(), "leader");
    let built = leader.build_snapshot().await.unwrap();
    let bytes = std::fs::read(from.path().join(SNAPSHOT_FILE)).unwrap();
    let state = &bytes[state_at(&from.path().join(SNAPSHOT_FILE)).unwrap() as usize..];
    drop(leader);
    check(
        &StateMachineStore::open(from.path()).unwrap().shared(),
        "reopened",
    );

    let mut follower = StateMachineStore::open(to.path()).unwrap();
    let mut data = follower.begin_receiving_snapshot().await.unwrap();
    data.write_all(state).await.unwrap();
    data.flush().await.unwrap();
    follower.install_snapshot(&built.meta, data).await.unwrap();
    check(&follower.shared(), "follower");
    drop(follower);
    let reopened = StateMachineStore::open(to.path()).unwrap();
    check(&reopened.shared(), "follower reopened");
    // What needs a path gets the small blob written out as its file.
    let path = reopened.shared().blob_file(&s).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), small);
}

/// An entry committed before it is on the leader's disk (its own entries count toward the
/// quorum at once, see `super::super::durable`) is applied only once it is there, and not at
/// all if the log cannot be written.
#[tokio::test]
async fn an_entry_is_applied_only_once_it_is_on_the_logs_disk() {
    use super::super::durable::{DurableIndex, Effect};
    let dir = tempfile::tempdir().unwrap();
    let durable = DurableIndex::new(Some(0));
    let mut sm = StateMachineStore::open(dir.path())
        .unwrap()
        .after_log(durable.clone());
    let shared = sm.shared();
    let applying = tokio::spawn(async move {
        let outcome = sm.apply([set("a"), set("bb")]).await.map(|_| ());
        (sm, outcome)
    });
    // Not on disk yet: nothing applied within a generous bound.
    let waited = tokio::time::timeout(std::time::Duration::from_millis(200), async {
        while shared.read().last_applied.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_err(), "applied before the log was on disk");
    durable.synced([Effect::Appended(2)].into_iter());
    let (mut sm, outcome) = applying.await.unwrap();
    outcome.unwrap();
    assert!(shared.read().state.kv.get("m", "bb").is_some());

    // A failed log write: the apply fails instead of waiting forever or applying.
    let failing = tokio::spawn(async move { sm.apply([set("ccc")]).await.map(|_| ()) });
    durable.failed();
    assert!(failing.await.unwrap().is_err());
    assert!(shared.read().state.kv.get("m", "ccc").is_none());
}
