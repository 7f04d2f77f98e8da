//! `push backup` and `push restore` end to end: a backup taken through a follower of a
//! 3-node cluster under write load holds every write acknowledged before it started (and a
//! gap-free prefix of the rest), restores into a 1-node cluster under a new token, which
//! then grows to 3; damaged files (truncated, bit-flipped, not a backup, a newer format) and
//! a non-empty target are refused with the byte offset or the reason, leaving nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use push_protocol::{Op, ReadMode, Reply, Value, FORMAT_VERSION};

use crate::support::cluster::{fails, free_port, get, ok, push_bin, set};
use crate::support::Cluster;

/// Writes at most this many keys while the backup runs.
const MAX_WRITES: u64 = 20_000;
/// And for at most this long.
const WRITE_FOR: Duration = Duration::from_secs(60);

/// `push ARGS --token-file TOKEN` run in `dir`.
fn push(dir: &Path, token_file: &Path, args: &[&str]) -> Output {
    Command::new(push_bin())
        .args(args)
        .arg("--token-file")
        .arg(token_file)
        .current_dir(dir)
        .env_remove("PUSH_ADDR")
        .env_remove("PUSH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run push")
}

/// Code, a queue with a leased item, a timeseries and a user, besides kv.
fn fill(cluster: &Cluster) {
    cluster.deploy_app(
        "app",
        "import push\n\n@push.route(\"GET\", \"/\")\ndef hello(request):\n    return \"backed up\"\n",
        1,
        "the app to back up",
    );
    ok(&cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "import push\nq = push.queue('jobs')\nq.put_many(['one', 'two', 'three'])\nq.take(lease=3600)\n\
         push.timeseries('temps').append(21.5, t=1700000000.0)",
    ]));
    ok(&cluster.cli(&[
        "user",
        "--to",
        &cluster.addr(1),
        "add",
        "backup-operator",
        "--role",
        "operator",
    ]));
}

/// What [`fill`] wrote, read through `cluster`'s node `id` (stale reads: call after it
/// applied everything).
async fn check_filled(cluster: &Cluster, id: u64) {
    let c = cluster.client(id).await;
    let Ok(Reply::Versions { head, versions }) = c.call(Op::Versions { app: "main".into() }).await
    else {
        panic!("no versions");
    };
    assert_eq!((head, versions.len()), (Some(1), 1));
    let Ok(Reply::Files { files, .. }) = c
        .call(Op::Files {
            app: "main".into(),
            version: Some(1),
        })
        .await
    else {
        panic!("no files");
    };
    let source = String::from_utf8_lossy(&files["app.py"]).to_string();
    assert!(source.contains("backed up"), "{source}");
    let Ok(Reply::QueueStats(stats)) = c.call(Op::QueueStats).await else {
        panic!("no queue stats");
    };
    let jobs = stats.iter().find(|q| q.name == "jobs").expect("queue jobs");
    assert_eq!((jobs.ready, jobs.leased, jobs.puts), (2, 1, 3));
    let Ok(Reply::TsStats(series)) = c.call(Op::TsStats).await else {
        panic!("no series");
    };
    assert_eq!(
        series
            .iter()
            .find(|s| s.name == "temps")
            .expect("temps")
            .points,
        1
    );
    let Ok(Reply::Users(users)) = c.call(Op::UserList).await else {
        panic!("no users");
    };
    assert!(users.iter().any(|u| u.name == "backup-operator"));
    let Ok(Reply::Audit(audit)) = c
        .call(Op::Audit {
            after: 0,
            limit: 100,
            action: Some("deploy".into()),
        })
        .await
    else {
        panic!("no audit");
    };
    assert_eq!(audit.len(), 1);
}

/// The keys of map `load` on node `id`: they must be `k1..=kN` without a gap; returns N.
async fn load_prefix(cluster: &Cluster, id: u64, read: ReadMode) -> u64 {
    let c = cluster.client(id).await;
    let Ok(Reply::Keys(keys)) = c
        .call(Op::KvList {
            map: "load".into(),
            prefix: String::new(),
            read,
        })
        .await
    else {
        panic!("no keys");
    };
    let mut numbers: Vec<u64> = keys
        .iter()
        .map(|k| k.trim_start_matches('k').parse().expect("kN"))
        .collect();
    numbers.sort_unstable();
    let n = numbers.len() as u64;
    assert!(
        numbers.iter().copied().eq(1..=n),
        "the restored writes are not a prefix of the acknowledged ones"
    );
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_a_cluster_of_another_size() {
    let source = Cluster::start(3).await;
    fill(&source);

    // One client writes k1, k2, ... in order through node 2 (a follower or not).
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let c = source.client(2).await;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < MAX_WRITES && started.elapsed() < WRITE_FOR {
                i += 1;
                set(&c, "load", &format!("k{i}"), Value::Int(i as i64)).await;
                acked.store(i, Ordering::Relaxed);
            }
        })
    };
    // Let some writes land, then back up through a follower while the writer goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = source.wait_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let before = acked.load(Ordering::Relaxed);
    assert!(before >= 200, "the writer is stuck at {before}");
    let file = source.dir.path().join("cluster.backup");
    let (dir, token_file) = (source.dir.path().to_path_buf(), source.token_file.clone());
    let (addr, file_arg) = (source.addr(follower), file.to_string_lossy().to_string());
    let out = tokio::task::spawn_blocking(move || {
        push(&dir, &token_file, &["backup", &file_arg, "--to", &addr])
    })
    .await
    .expect("backup");
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("wrote") && stdout.contains("SHA-256"),
        "{stdout}"
    );
    assert!(
        stderr.contains("backup of log index") && stderr.contains("(100%)"),
        "{stderr}"
    );
    // A second backup to the same name is refused, the first kept.
    let again = fails(&source.cli(&["backup", &file.to_string_lossy(), "--to", &source.addr(1)]));
    assert!(again.contains("already exists"), "{again}");

    // Restore into a new 1-node cluster under a new token.
    let target = tempfile::tempdir().expect("temp dir");
    let data = target.path().join("restored");
    let listen = format!("127.0.0.1:{}", free_port());
    let restored = ok(&source.cli(&[
        "restore",
        &file.to_string_lossy(),
        "--data",
        &data.to_string_lossy(),
        "--listen",
        &listen,
    ]));
    assert!(restored.contains("new cluster token"), "{restored}");
    let token = std::fs::read_to_string(data.join("token")).expect("token");
    let token = token.trim();
    assert_ne!(token, source.token);
    drop(source);

    let mut cluster = Cluster::launch_from_at(&data, token, &listen);
    cluster.wait_leader(Duration::from_secs(30)).await;
    let n = load_prefix(&cluster, 1, ReadMode::Linearizable).await;
    assert!(
        n >= before,
        "acknowledged k1..k{before} before the backup, restored k1..k{n}"
    );
    check_filled(&cluster, 1).await;

    // It takes writes, and grows to three nodes that hold the same state.
    let c = cluster.client(1).await;
    let index = set(&c, "after", "restore", Value::Str("yes".into())).await;
    for id in [2, 3] {
        cluster.add_node(id, &[]);
    }
    cluster.wait_voters(3, Duration::from_secs(60)).await;
    cluster
        .wait_applied(3, index, Duration::from_secs(30))
        .await;
    assert_eq!(load_prefix(&cluster, 3, ReadMode::Stale).await, n);
    check_filled(&cluster, 3).await;
    let c3 = cluster.client(3).await;
    assert_eq!(
        get(&c3, "after", "restore", ReadMode::Stale).await,
        Some(Value::Str("yes".into()))
    );
}

/// A restore of `file` into `data` that must fail; returns stderr. Nothing may be left.
fn refused(cluster: &Cluster, file: &Path, data: &Path) -> String {
    let err = fails(&cluster.cli(&[
        "restore",
        &file.to_string_lossy(),
        "--data",
        &data.to_string_lossy(),
    ]));
    let leftovers: Vec<PathBuf> = std::fs::read_dir(data.parent().expect("parent"))
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backups_and_used_directories_are_refused() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client(1).await;
    for i in 0..50 {
        set(&c, "m", &format!("k{i}"), Value::Int(i)).await;
    }
    let dir = cluster.dir.path();
    let file = dir.join("good.backup");
    ok(&cluster.cli(&["backup", &file.to_string_lossy(), "--to", &cluster.addr(1)]));
    let good = std::fs::read(&file).expect("backup");
    let data = dir.join("target");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };

    // Truncated: inside the header, a chunk, the end.
    for cut in [20, 100, good.len() - 10] {
        let err = refused(&cluster, &write("cut.backup", &good[..cut]), &data);
        assert!(
            err.contains("truncated") && err.contains(&format!("byte offset {cut}")),
            "cut at {cut}: {err}"
        );
        assert!(!data.exists());
    }
    // A flipped bit in the first chunk (which starts at byte 40, after the header).
    let mut flipped = good.clone();
    flipped[60] ^= 0x04;
    let err = refused(&cluster, &write("flipped.backup", &flipped), &data);
    assert!(err.contains("corrupted at byte offset 40"), "{err}");
    // In the header.
    let mut flipped = good.clone();
    flipped[14] ^= 0x01;
    let err = refused(&cluster, &write("flipped.backup", &flipped), &data);
    assert!(err.contains("corrupted at byte offset 0"), "{err}");
    // Not a backup at all: a snapshot file.
    let snapshot = cluster.data_dir(1).join("state/snapshot.bin");
    if snapshot.exists() {
        let err = refused(&cluster, &snapshot, &data);
        assert!(err.contains("not a Push backup"), "{err}");
    }
    let err = refused(&cluster, &write("text.backup", b"hello, world\n"), &data);
    assert!(err.contains("not a Push backup"), "{err}");
    // A newer format (header checksum made to match).
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&newer[..36]);
    newer[36..40].copy_from_slice(&crc.to_le_bytes());
    let err = refused(&cluster, &write("newer.backup", &newer), &data);
    assert!(
        err.contains(&format!("is in format {}", FORMAT_VERSION + 1))
            && err.contains("newer Push release"),
        "{err}"
    );
    assert!(!data.exists());

    // A directory in use is refused and left as it was.
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("keep"), b"mine").expect("write");
    let err = refused(&cluster, &file, &data);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read(data.join("keep")).expect("kept"), b"mine");

    // An empty directory is fine; --keep-token keeps the token this command uses.
    std::fs::remove_file(data.join("keep")).expect("rm");
    let out = ok(&cluster.cli(&[
        "restore",
        &file.to_string_lossy(),
        "--data",
        &data.to_string_lossy(),
        "--keep-token",
    ]));
    assert!(out.contains("kept the cluster token"), "{out}");
    let token = std::fs::read_to_string(data.join("token")).expect("token");
    assert_eq!(token.trim(), cluster.token);
}
