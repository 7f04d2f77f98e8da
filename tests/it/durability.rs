//! Durability across crashes: the leader is killed with kill -9 while many writers' writes
//! travel in shared batches (one Raft entry, one fsync each), and every acknowledged write
//! must be on every node afterwards; every node stopped or killed at once keeps its state and
//! code history; a torn last log record is cut at restart and the node catches up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use push_protocol::{Client, Op, ReadMode, Reply, Value};

use crate::support::cluster::{get, set};
use crate::support::{http, Cluster};

const WRITERS: u64 = 24;
/// Writes each writer attempts at most.
const PER_WRITER: i64 = 3_000;

/// (sum, count) of the leader's `push_raft_proposal_ops` histogram: writes and entries.
async fn proposals(cluster: &Cluster, id: u64) -> (f64, f64) {
    let text = http::get(&cluster.http(id), "/metrics").await.text();
    let sample = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        sample("push_raft_proposal_ops_sum "),
        sample("push_raft_proposal_ops_count "),
    )
}

/// Writer `w` sets `durable[w{w}-{i}] = i`, first through `first`, after a lost connection
/// through the nodes in `then` in turn; acknowledged writes go to `tx`. A call gets 2 s: a
/// call cut off by the kill is an unknown outcome, never an acknowledgement.
fn spawn_writer(
    addrs: (String, Vec<String>),
    token: String,
    w: u64,
    stop: Arc<AtomicBool>,
    acked_total: Arc<AtomicU64>,
    tx: tokio::sync::mpsc::UnboundedSender<(String, i64)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (first, then) = addrs;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut client = Client::connect(&first, &token).await.ok();
        let mut next = w as usize;
        let mut i = 0i64;
        while !stop.load(Ordering::SeqCst) && i < PER_WRITER && Instant::now() < deadline {
            let Some(c) = &client else {
                next += 1;
                client = Client::connect(&then[next % then.len()], &token).await.ok();
                if client.is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            };
            let key = format!("w{w}-{i}");
            let op = Op::KvSet {
                map: "durable".into(),
                key: key.clone(),
                value: Value::Int(i),
            };
            match tokio::time::timeout(Duration::from_secs(2), c.call(op)).await {
                Ok(Ok(Reply::Written { .. })) => {
                    acked_total.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send((key, i));
                }
                Ok(Ok(other)) => panic!("unexpected {other:?}"),
                Ok(Err(e)) if e.code().is_some() => {}
                _ => client = None,
            }
            i += 1;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_batch_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let addrs = (
                cluster.addr(leader),
                survivors.iter().map(|id| cluster.addr(*id)).collect(),
            );
            spawn_writer(
                addrs,
                cluster.token.clone(),
                w,
                stop.clone(),
                acked.clone(),
                tx.clone(),
            )
        })
        .collect();
    drop(tx);

    // Wait until the leader is grouping writes (more writes than entries proposed) and the
    // writers are still going, so the kill lands among batches in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ops, entries) = proposals(&cluster, leader).await;
        if ops >= entries + 50.0 {
            eprintln!("leader {leader} grouped {ops} writes into {entries} entries; killing it");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never grouped writes: {ops} writes in {entries} entries\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(leader);
    let at_kill = acked.load(Ordering::SeqCst);

    // Writes go on through the survivors until some more are acknowledged there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < at_kill + 100 {
        assert!(
            Instant::now() < deadline,
            "no writes were acknowledged after the leader was killed\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let mut all = Vec::new();
    while let Some(pair) = rx.recv().await {
        all.push(pair);
    }
    eprintln!(
        "{} writes acknowledged, {at_kill} of them before leader {leader} was killed",
        all.len()
    );

    cluster.restart(leader);
    let marker = set(
        &cluster.client(survivors[0]).await,
        "durable",
        "marker",
        Value::Int(1),
    )
    .await;
    for id in 1..=3 {
        cluster
            .wait_applied(id, marker, Duration::from_secs(30))
            .await;
        let client = cluster.client(id).await;
        for (key, value) in &all {
            assert_eq!(
                get(&client, "durable", key, ReadMode::Stale).await,
                Some(Value::Int(*value)),
                "node {id} lost acknowledged write {key} ({} acknowledged, leader was {leader})",
                all.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_killed_and_restarted_keep_state_and_code_history() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client(1).await;
    for i in 0..50 {
        set(&client, "durable", &format!("k{i}"), Value::Int(i)).await;
    }
    let app = cluster.dir.path().join("app");
    std::fs::create_dir_all(&app).expect("app dir");
    std::fs::write(app.join("app.py"), "VERSION = 1\n").expect("write");
    crate::support::cluster::ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(2),
        "-m",
        "one",
    ]));
    std::fs::write(app.join("app.py"), "VERSION = 2\n").expect("write");
    crate::support::cluster::ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(3),
        "-m",
        "two",
    ]));
    drop(client);

    // One graceful stop, two kill -9s, then everyone back.
    cluster.stop(1);
    cluster.kill(2);
    cluster.kill(3);
    for id in 1..=3 {
        cluster.restart(id);
    }
    cluster.wait_leader(Duration::from_secs(20)).await;
    let client = cluster.client(2).await;
    for i in 0..50 {
        assert_eq!(
            get(&client, "durable", &format!("k{i}"), ReadMode::Linearizable).await,
            Some(Value::Int(i))
        );
    }
    let versions =
        crate::support::cluster::ok(&cluster.cli(&["versions", "--to", &cluster.addr(1)]));
    assert!(
        versions.contains("* v2") && versions.contains("two"),
        "{versions}"
    );
    assert!(
        versions.contains("v1") && versions.contains("one"),
        "{versions}"
    );
    let diff =
        crate::support::cluster::ok(&cluster.cli(&["diff", "1", "2", "--to", &cluster.addr(3)]));
    assert!(
        diff.contains("-VERSION = 1") && diff.contains("+VERSION = 2"),
        "{diff}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_log_record_is_cut_at_restart_and_the_node_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let client = cluster.client(leader).await;
    let mut last = 0;
    for i in 0..100 {
        last = set(&client, "torn", &format!("k{i}"), Value::Int(i)).await;
    }
    cluster
        .wait_applied(victim, last, Duration::from_secs(10))
        .await;
    cluster.kill(victim);
    // Tear the last record: as if the machine died in the middle of a write.
    let log = cluster.data_dir(victim).join("log/raft.log");
    let len = records_end(&std::fs::read(&log).expect("log file"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open log");
    file.set_len(len - 5).expect("truncate");
    drop(file);
    for i in 100..120 {
        last = set(&client, "torn", &format!("k{i}"), Value::Int(i)).await;
    }
    cluster.restart(victim);
    cluster
        .wait_applied(victim, last, Duration::from_secs(20))
        .await;
    let text =
        std::fs::read_to_string(cluster.data_dir(victim).join("node.log")).unwrap_or_default();
    assert!(
        text.contains("trailing bytes"),
        "the torn tail was not reported:\n{text}"
    );
    let c = cluster.client(victim).await;
    for i in 0..120 {
        assert_eq!(
            get(&c, "torn", &format!("k{i}"), ReadMode::Stale).await,
            Some(Value::Int(i)),
            "k{i}"
        );
    }
}

/// Where the records of a raft log file end: after its 12-byte header, records framed as
/// `[u32 LE length][u32 LE crc32][body]`, then the zeros of the space allocated ahead.
fn records_end(bytes: &[u8]) -> u64 {
    let mut pos = 12;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        pos += 8 + len;
    }
    pos as u64
}
