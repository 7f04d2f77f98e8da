//! The cluster backbone: formation, replication, leader failure, restarts, joins by snapshot.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use push_protocol::{Client, Op, ReadMode, Reply, Value};

use crate::support::cluster::{get, set};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_and_a_write_through_any_node_is_read_from_every_node() {
    let cluster = Cluster::start(3).await;
    let mut last_index = 0;
    for id in 1..=3 {
        let client = cluster.client(id).await;
        last_index = set(
            &client,
            "greetings",
            &format!("from{id}"),
            Value::Str(format!("hello {id}")),
        )
        .await;
    }
    for reader in 1..=3 {
        let client = cluster.client(reader).await;
        for writer in 1..=3 {
            let got = get(
                &client,
                "greetings",
                &format!("from{writer}"),
                ReadMode::Linearizable,
            )
            .await;
            assert_eq!(
                got,
                Some(Value::Str(format!("hello {writer}"))),
                "node {reader} reading node {writer}'s write"
            );
        }
        // A stale read sees it too once the node has applied the last write.
        cluster
            .wait_applied(reader, last_index, Duration::from_secs(10))
            .await;
        let got = get(&client, "greetings", "from3", ReadMode::Stale).await;
        assert_eq!(got, Some(Value::Str("hello 3".into())));
    }
    let status = cluster.status(2).await.expect("status");
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.voter));
    assert_eq!(status.term, cluster.status(1).await.expect("status").term);
}

/// Writes from a client that reconnects to any live node; records which were acknowledged.
async fn write_stream(
    cluster: &Cluster,
    live: &[u64],
    prefix: &str,
    count: usize,
    acked: &mut BTreeMap<String, i64>,
) {
    let mut clients: BTreeMap<u64, Client> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let mut attempt = 0usize;
    while i < count {
        assert!(
            Instant::now() < deadline,
            "writes stalled\n{}",
            cluster.logs()
        );
        let id = live[attempt % live.len()];
        attempt += 1;
        if let std::collections::btree_map::Entry::Vacant(slot) = clients.entry(id) {
            match Client::connect(&cluster.addr(id), &cluster.token).await {
                Ok(c) => {
                    slot.insert(c);
                }
                Err(_) => continue,
            }
        }
        let key = format!("{prefix}{i}");
        let op = Op::KvSet {
            map: "stream".into(),
            key: key.clone(),
            value: Value::Int(i as i64),
        };
        match clients[&id].call(op).await {
            Ok(Reply::Written { .. }) => {
                acked.insert(key, i as i64);
                i += 1;
            }
            Ok(other) => panic!("unexpected reply {other:?}"),
            Err(_) => {
                clients.remove(&id);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write_and_it_catches_up_after_restart() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let mut acked = BTreeMap::new();

    // A stream through every node, the leader killed, the stream going on through the rest.
    // (`leader_killed_mid_stream_with_concurrent_writers` kills it with writes in flight.)
    let all: Vec<u64> = vec![1, 2, 3];
    write_stream(&cluster, &all, "before", 200, &mut acked).await;
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    cluster.kill(leader);
    write_stream(&cluster, &survivors, "during", 200, &mut acked).await;

    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let client = cluster.client(new_leader).await;
    for (key, value) in &acked {
        assert_eq!(
            get(&client, "stream", key, ReadMode::Linearizable).await,
            Some(Value::Int(*value)),
            "acknowledged write {key} is missing after the leader was killed"
        );
    }

    // The killed node comes back from its data dir and catches up.
    cluster.restart(leader);
    let last = cluster
        .status(new_leader)
        .await
        .expect("status")
        .last_log_index
        .expect("log");
    cluster
        .wait_applied(leader, last, Duration::from_secs(20))
        .await;
    let back = cluster.client(leader).await;
    for (key, value) in &acked {
        assert_eq!(
            get(&back, "stream", key, ReadMode::Stale).await,
            Some(Value::Int(*value))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_stream_with_concurrent_writers() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64)>();
    // Four writers against the survivors (followers forward to the leader).
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let addr = cluster.addr(survivors[(w % 2) as usize]);
        let token = cluster.token.clone();
        let tx = tx.clone();
        writers.push(spawn_writer(
            addr,
            token,
            "chaos",
            w,
            Duration::from_secs(4),
            tx,
        ));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.kill(leader);
    for w in writers {
        w.await.expect("writer");
    }
    let mut acked = Vec::new();
    while let Some(pair) = rx.recv().await {
        acked.push(pair);
    }
    assert!(
        acked.len() > 50,
        "too few writes were acknowledged: {}",
        acked.len()
    );
    let client = cluster.client(survivors[0]).await;
    for (key, value) in &acked {
        assert_eq!(
            get(&client, "chaos", key, ReadMode::Linearizable).await,
            Some(Value::Int(*value)),
            "lost {key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_killed_during_concurrent_writes_keep_every_acknowledged_write() {
    let mut cluster = Cluster::start(3).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64)>();
    // Six writers spread over the three nodes, still writing when every node is killed.
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let addr = cluster.addr(w % 3 + 1);
        let token = cluster.token.clone();
        let tx = tx.clone();
        writers.push(spawn_writer(
            addr,
            token,
            "crash",
            w,
            Duration::from_secs(3),
            tx,
        ));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_before_kill = rx.len();
    for id in 1..=3 {
        cluster.kill(id);
    }
    for w in writers {
        w.await.expect("writer");
    }
    let mut acked = Vec::new();
    while let Some(pair) = rx.recv().await {
        acked.push(pair);
    }
    assert!(
        acked_before_kill > 30,
        "writes were not flowing when the nodes were killed: {acked_before_kill}"
    );
    for id in 1..=3 {
        cluster.restart(id);
    }
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let client = cluster.client(leader).await;
    for (key, value) in &acked {
        assert_eq!(
            get(&client, "crash", key, ReadMode::Linearizable).await,
            Some(Value::Int(*value)),
            "acknowledged write {key} was lost when every node was killed"
        );
    }
    eprintln!(
        "{} writes acknowledged ({acked_before_kill} when the kills began), all present after restart",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_and_receives_the_full_state_through_a_snapshot() {
    // Snapshot every 20 entries and keep no log behind it: a newcomer can only catch up by
    // installing a snapshot.
    let flags = ["--snapshot-every", "20", "--keep-logs", "0"];
    let mut cluster = Cluster::start_with(3, &flags).await;
    let client = cluster.client(1).await;
    for i in 0..120 {
        set(
            &client,
            "big",
            &format!("k{i:03}"),
            Value::Str("x".repeat(100)),
        )
        .await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = cluster.status(leader).await.expect("status");
        if s.snapshot_index.unwrap_or(0) >= 100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader built no snapshot: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.add_node(4, &flags);
    cluster.wait_voters(4, Duration::from_secs(30)).await;
    cluster.wait_joined([4]).await;
    let last = cluster
        .status(leader)
        .await
        .expect("status")
        .last_log_index
        .expect("log");
    cluster.wait_applied(4, last, Duration::from_secs(20)).await;
    let four = cluster.client(4).await;
    match four
        .call(Op::KvList {
            map: "big".into(),
            prefix: "k".into(),
            read: ReadMode::Stale,
        })
        .await
    {
        Ok(Reply::Keys(keys)) => assert_eq!(keys.len(), 120),
        other => panic!("{other:?}"),
    }
    assert!(
        cluster.data_dir(4).join("state/snapshot.bin").exists(),
        "node 4 caught up without installing a snapshot"
    );
    let log = std::fs::read_to_string(cluster.data_dir(4).join("node.log")).unwrap_or_default();
    assert!(
        log.contains("installed snapshot"),
        "node 4 did not install a snapshot:\n{log}"
    );
    // And it takes part: a write through node 4 is read from node 1.
    set(&four, "big", "from4", Value::Bool(true)).await;
    assert_eq!(
        get(&client, "big", "from4", ReadMode::Linearizable).await,
        Some(Value::Bool(true))
    );
    // Killed with -9 in the middle of receiving and installing another snapshot (the partial
    // files such a kill leaves), it starts from the installed one and answers from it.
    drop(four);
    cluster.kill(4);
    let state = cluster.data_dir(4).join("state");
    let installed = std::fs::read(state.join("snapshot.bin")).expect("snapshot");
    let half = &installed[..installed.len() / 2];
    std::fs::write(state.join("snapshot.incoming"), half).expect("write");
    std::fs::write(state.join("snapshot.bin.installing"), half).expect("write");
    cluster.restart(4);
    let last = cluster
        .status(leader)
        .await
        .expect("status")
        .last_log_index
        .expect("log");
    cluster.wait_applied(4, last, Duration::from_secs(20)).await;
    let four = cluster.client(4).await;
    assert_eq!(
        get(&four, "big", "k119", ReadMode::Stale).await,
        Some(Value::Str("x".repeat(100)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_delete_and_list() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client(2).await;
    let cas = |expected: Option<Value>, new: Option<Value>| Op::KvCas {
        map: "m".into(),
        key: "k".into(),
        expected,
        new,
    };
    match c.call(cas(None, Some(Value::Int(1)))).await {
        Ok(Reply::Cas { ok: true, .. }) => {}
        other => panic!("{other:?}"),
    }
    match c.call(cas(None, Some(Value::Int(2)))).await {
        Ok(Reply::Cas {
            ok: false, current, ..
        }) => assert_eq!(current, Some(Value::Int(1))),
        other => panic!("{other:?}"),
    }
    match c.call(cas(Some(Value::Int(1)), Some(Value::Int(3)))).await {
        Ok(Reply::Cas { ok: true, .. }) => {}
        other => panic!("{other:?}"),
    }
    set(&c, "m", "other", Value::None).await;
    match c
        .call(Op::KvList {
            map: "m".into(),
            prefix: String::new(),
            read: ReadMode::Linearizable,
        })
        .await
    {
        Ok(Reply::Keys(keys)) => assert_eq!(keys, vec!["k", "other"]),
        other => panic!("{other:?}"),
    }
    match c
        .call(Op::KvDelete {
            map: "m".into(),
            key: "k".into(),
        })
        .await
    {
        Ok(Reply::Deleted { existed: true, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&c, "m", "k", ReadMode::Linearizable).await, None);
    // The CLI speaks the same.
    let out = crate::support::cluster::ok(&cluster.cli(&[
        "kv",
        "set",
        "cli",
        "n",
        "[1, 2.5, null]",
        "--to",
        &cluster.addr(3),
    ]));
    assert!(out.contains("ok"), "{out}");
    let out = crate::support::cluster::ok(&cluster.cli(&[
        "kv",
        "get",
        "cli",
        "n",
        "--to",
        &cluster.addr(1),
    ]));
    assert_eq!(out.trim(), "[1, 2.5, None]");
}

/// A writer setting `MAP[w{w}-{i}] = i` through `addr` for `secs`, reconnecting after lost
/// connections; every acknowledged write is sent to `tx`. A call gets 2 s: a node killed
/// mid-call is an unknown outcome, never an acknowledgement.
fn spawn_writer(
    addr: String,
    token: String,
    map: &'static str,
    w: u64,
    secs: Duration,
    tx: tokio::sync::mpsc::UnboundedSender<(String, i64)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let deadline = Instant::now() + secs;
        let mut client = Client::connect(&addr, &token).await.ok();
        let mut i = 0i64;
        while Instant::now() < deadline {
            let Some(c) = &client else {
                client = Client::connect(&addr, &token).await.ok();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let key = format!("w{w}-{i}");
            let op = Op::KvSet {
                map: map.into(),
                key: key.clone(),
                value: Value::Int(i),
            };
            match tokio::time::timeout(Duration::from_secs(2), c.call(op)).await {
                Ok(Ok(Reply::Written { .. })) => {
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
async fn a_write_forwarded_to_a_paused_leader_fails_in_bounded_time_with_outcome_unknown() {
    // Slow elections: the follower must still be forwarding to the paused leader when the
    // write arrives, not already leading itself (a loaded machine can delay the write).
    let mut cluster = Cluster::start_with(
        3,
        &["--election-min-ms", "1500", "--election-max-ms", "2500"],
    )
    .await;
    // The leader as it is right before the pause (start-up on a loaded machine can still
    // move it after the first election).
    let mut attempts = 0;
    let (leader, client) = loop {
        attempts += 1;
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        let client = cluster.client(follower).await;
        // One forwarded write first, so the follower holds a connection to the leader: the
        // next forward is then surely sent, and only its answer is missing.
        let warm = Op::KvSet {
            map: "m".into(),
            key: "warm".into(),
            value: Value::Int(0),
        };
        assert!(matches!(client.call(warm).await, Ok(Reply::Written { .. })));
        let still = cluster
            .status(leader)
            .await
            .is_some_and(|s| s.role == "leader");
        if still || attempts >= 5 {
            break (leader, client);
        }
    };
    cluster.pause(leader);
    // A stop takes effect once every thread of the node has stopped (one in an fdatasync
    // finishes it first): wait until the kernel says the whole process is stopped.
    if let Some(pid) = cluster.pid(leader) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let stopped = |pid: u32| {
            let dir = format!("/proc/{pid}/task");
            std::fs::read_dir(&dir).is_ok_and(|tasks| {
                tasks.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .ok()
                        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
                        .unwrap_or(true)
                })
            })
        };
        while !stopped(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let started = Instant::now();
    let op = Op::KvSet {
        map: "m".into(),
        key: "k".into(),
        value: Value::Int(1),
    };
    let answer = tokio::time::timeout(Duration::from_secs(40), client.call(op)).await;
    let took = started.elapsed();
    cluster.resume(leader);
    let err = match answer {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(reply)) => panic!("a paused leader cannot commit: {reply:?}"),
        Err(_) => panic!("the forward hung past 40 s"),
    };
    assert!(
        err.contains("did not answer") && err.contains("outcome is unknown"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The cluster carries on: a write through the same follower succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let op = Op::KvSet {
            map: "m".into(),
            key: "after".into(),
            value: Value::Int(2),
        };
        if let Ok(Reply::Written { .. }) = client.call(op).await {
            break;
        }
        assert!(Instant::now() < deadline, "no write after the pause");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
