//! The rolling upgrade, rehearsed with one binary: a cluster whose nodes all run as the
//! previous release (`--format=N-1`, the switch that makes a node write and speak the
//! previous format only) is upgraded one node at a time to this release's format while a
//! client keeps writing. Mixed nodes agree on the previous format between them, every acknowledged write is there at the end, and
//! `push status` shows each node's release and format as it goes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use push_protocol::{Client, Op, ReadMode, Reply, Value, FORMAT_VERSION};

use crate::support::cluster::{fails, get, ok, set};
use crate::support::Cluster;

/// The previous release's format, and the switch that makes a node run as it.
const PREVIOUS: u32 = FORMAT_VERSION - 1;
fn old_flag() -> String {
    format!("--format={PREVIOUS}")
}

/// A `push` command whose request only this release's format knows, when it has one: sent to
/// a node still at the previous format, it is refused by the client before sending.
const NEWEST_REQUEST: Option<&[&str]> = Some(&["envs"]);
/// The writer stops after this many writes or this long, whichever comes first.
const MAX_WRITES: u64 = 20_000;
const MAX_WRITING: Duration = Duration::from_secs(240);

/// Writes `up/kNNNNN` round-robin through every node, reconnecting to nodes that went away,
/// until told to stop; the keys acknowledged go into `acked`.
async fn write_loop(
    addrs: Vec<String>,
    token: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let mut clients: Vec<Option<Client>> = addrs.iter().map(|_| None).collect();
    let started = Instant::now();
    for i in 0..MAX_WRITES {
        if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_WRITING {
            return;
        }
        let slot = i as usize % addrs.len();
        if clients[slot].is_none() {
            let connect = Client::connect(&addrs[slot], &token);
            match tokio::time::timeout(Duration::from_secs(1), connect).await {
                Ok(Ok(c)) => clients[slot] = Some(c),
                // Down (being upgraded): try the next node.
                _ => continue,
            }
        }
        let Some(client) = &clients[slot] else {
            continue;
        };
        let key = format!("k{i:05}");
        let write = client.call(Op::KvSet {
            map: "up".into(),
            key: key.clone(),
            value: Value::Int(i as i64),
        });
        match tokio::time::timeout(Duration::from_secs(10), write).await {
            Ok(Ok(Reply::Written { .. })) => acked.lock().expect("acked").push(key),
            // Refused, lost or of unknown outcome: not acknowledged, so not counted.
            _ => clients[slot] = None,
        }
    }
}

/// Waits until the writer has `n` more acknowledged writes than `from`.
async fn wait_progress(cluster: &Cluster, acked: &Mutex<Vec<String>>, from: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("acked").len() < from + n {
        assert!(
            Instant::now() < deadline,
            "writes stalled at {} acknowledged\n{}",
            acked.lock().expect("acked").len(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The format in the header of node `id`'s raft log.
fn log_format(cluster: &Cluster, id: u64) -> u32 {
    let bytes = std::fs::read(cluster.data_dir(id).join("log/raft.log")).expect("raft log");
    assert_eq!(&bytes[..8], b"PUSHLOG\n");
    u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"))
}

/// Each node's format as `push status --json` reports it, by id.
fn status_formats(cluster: &Cluster) -> Vec<(u64, u64)> {
    let out = ok(&cluster.cli(&["status", "--json", "--to", &cluster.addr(1)]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let mut formats: Vec<(u64, u64)> = json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            assert!(n["release"].as_str().is_some_and(|r| !r.is_empty()), "{n}");
            (
                n["id"].as_u64().expect("id"),
                n["format"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    formats.sort_unstable();
    formats
}

/// Waits until node `id` answers and reports `format`.
async fn wait_format(cluster: &Cluster, id: u64, format: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = cluster.status(id).await {
            if s.format_version == format {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} does not report format {format}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_under_writes_keeps_every_acknowledged_write() {
    // No snapshot during the test, so that every write travels as log entries between mixed
    // nodes; snapshots across formats have their own test below.
    let (old, new) = (PREVIOUS as u64, FORMAT_VERSION as u64);
    let mut cluster = Cluster::start_with(3, &[&old_flag(), "--snapshot-every", "1000000"]).await;
    for id in 1..=3 {
        wait_format(&cluster, id, PREVIOUS).await;
        assert_eq!(
            log_format(&cluster, id),
            PREVIOUS,
            "node {id} writes format {old}"
        );
    }
    assert_eq!(status_formats(&cluster), [(1, old), (2, old), (3, old)]);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let addrs = (1..=3).map(|id| cluster.addr(id)).collect();
    let writer = tokio::spawn(write_loop(
        addrs,
        cluster.token.clone(),
        stop.clone(),
        acked.clone(),
    ));
    wait_progress(&cluster, &acked, 0, 50).await;

    let mut upgraded = Vec::new();
    for id in [3, 2, 1] {
        cluster.stop(id);
        cluster.set_flags(id, &[&old_flag()], &[]);
        cluster.restart(id);
        wait_format(&cluster, id, FORMAT_VERSION).await;
        upgraded.push(id);
        // The data dir was upgraded in place on start.
        assert_eq!(
            log_format(&cluster, id),
            FORMAT_VERSION,
            "node {id}'s log after its upgrade"
        );
        // The mixed cluster takes writes (through every node, the upgraded ones included).
        let from = acked.lock().expect("acked").len();
        wait_progress(&cluster, &acked, from, 60).await;
        let want: Vec<(u64, u64)> = (1..=3)
            .map(|n| (n, if upgraded.contains(&n) { new } else { old }))
            .collect();
        assert_eq!(
            status_formats(&cluster),
            want,
            "after upgrading {upgraded:?}"
        );
        if let (3, Some(request)) = (id, NEWEST_REQUEST) {
            // A request only the new format knows, sent to a node still at the previous one:
            // refused by this client before sending, naming both formats.
            let mut args = request.to_vec();
            let to = cluster.addr(1);
            args.extend(["--to", &to]);
            let err = fails(&cluster.cli(&args));
            assert!(
                err.contains(&format!("this request needs format {new}"))
                    && err.contains(&format!("speaks format {old}; upgrade that node")),
                "{err}"
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let acked: BTreeSet<String> = acked.lock().expect("acked").iter().cloned().collect();
    assert!(acked.len() >= 50 + 3 * 60, "{} writes", acked.len());
    eprintln!(
        "rolling upgrade: {} writes acknowledged while nodes 3, 2, 1 were upgraded",
        acked.len()
    );

    // Every acknowledged write is there: linearizably, and on every node once it caught up.
    let c1 = cluster.client(1).await;
    let keys = |reply: Result<Reply, push_protocol::ClientError>| match reply {
        Ok(Reply::Keys(keys)) => keys.into_iter().collect::<BTreeSet<String>>(),
        other => panic!("listing keys failed: {other:?}"),
    };
    let list = |read| Op::KvList {
        map: "up".into(),
        prefix: String::new(),
        read,
    };
    let present = keys(c1.call(list(ReadMode::Linearizable)).await);
    let lost: Vec<&String> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let commit = cluster
        .status(leader)
        .await
        .and_then(|s| s.applied_index)
        .expect("leader's applied index");
    for id in 1..=3 {
        cluster
            .wait_applied(id, commit, Duration::from_secs(30))
            .await;
        let client = cluster.client(id).await;
        let here = keys(client.call(list(ReadMode::Stale)).await);
        assert!(
            acked.is_subset(&here),
            "node {id} misses acknowledged writes"
        );
    }
    assert_eq!(status_formats(&cluster), [(1, new), (2, new), (3, new)]);

    // Going back is refused before anything in the data dir is touched.
    cluster.stop(3);
    let data = cluster.data_dir(3).to_path_buf();
    let refused = refused_start(&cluster, &data).await;
    assert!(
        refused.contains(&format!("is in format {new}, newer than this release"))
            && refused.contains(&format!("formats 1 to {old}")),
        "{refused}"
    );
    assert_eq!(log_format(&cluster, 3), FORMAT_VERSION);
}

/// Starts node 3 on `data` held to the previous format and returns its stderr once it has exited
/// (bounded: a node that does not refuse is killed and the test fails).
async fn refused_start(cluster: &Cluster, data: &std::path::Path) -> String {
    let listen = format!("127.0.0.1:{}", crate::support::cluster::free_port());
    let mut child = std::process::Command::new(crate::support::cluster::push_bin())
        .args([
            "node",
            "--id",
            "3",
            "--listen",
            &listen,
            &old_flag(),
            "--data",
        ])
        .arg(data)
        .arg("--token-file")
        .arg(&cluster.token_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn push node");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                !status.success(),
                "a node of the previous format started on data of this one"
            );
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
                .expect("stderr");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a node held to the previous format kept running on data of this one");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_the_previous_format_installs_a_snapshot_from_an_upgraded_leader() {
    // Snapshots every 20 entries and no log kept behind them: a newcomer catches up only
    // through a snapshot, which the upgraded leader re-encodes in the newcomer's format.
    let flags = ["--snapshot-every", "20", "--keep-logs", "0"];
    let mut cluster = Cluster::start_with(2, &flags).await;
    let client = cluster.client(1).await;
    for i in 0..60 {
        set(&client, "up", &format!("k{i:02}"), Value::Int(i)).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster
        .status(leader)
        .await
        .and_then(|s| s.snapshot_index)
        .unwrap_or(0)
        < 40
    {
        assert!(Instant::now() < deadline, "the leader built no snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = old_flag();
    cluster.add_node(
        3,
        &[&old, "--learner", flags[0], flags[1], flags[2], flags[3]],
    );
    wait_format(&cluster, 3, PREVIOUS).await;
    let last = cluster
        .status(leader)
        .await
        .and_then(|s| s.last_log_index)
        .expect("last index");
    cluster.wait_applied(3, last, Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(cluster.data_dir(3).join("node.log")).unwrap_or_default();
    assert!(
        log.contains("installed snapshot"),
        "node 3 did not install a snapshot:\n{log}"
    );
    let snapshot = std::fs::read(cluster.data_dir(3).join("state/snapshot.bin")).expect("snapshot");
    assert_eq!(
        u32::from_le_bytes(snapshot[8..12].try_into().expect("4 bytes")),
        PREVIOUS,
        "node 3 keeps its snapshot in its own format"
    );
    let three = cluster.client(3).await;
    assert_eq!(
        get(&three, "up", "k59", ReadMode::Stale).await,
        Some(Value::Int(59))
    );
    // And it follows on from there.
    set(&client, "up", "after", Value::Bool(true)).await;
    let last = cluster
        .status(leader)
        .await
        .and_then(|s| s.last_log_index)
        .expect("last index");
    cluster.wait_applied(3, last, Duration::from_secs(20)).await;
    assert_eq!(
        get(&three, "up", "after", ReadMode::Stale).await,
        Some(Value::Bool(true))
    );
}
