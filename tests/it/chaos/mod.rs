//! Chaos: a 3-node cluster of real processes under a nemesis (kill -9 and restart, SIGSTOP
//! pauses, partitions through the fault proxies) while concurrent clients run kv reads,
//! writes and compare-and-sets and queue puts, takes and acks. Afterwards, with every fault
//! healed: each key's history must be linearizable, the queue total, and every node must hold
//! the same applied state.
//!
//! `PUSH_CHAOS_SECS` sets how long the faults run (default 15).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use push_protocol::{Client, ClientError, ErrorCode, Op, ReadMode, Reply, Value};
use rand::{Rng, SeedableRng};

use crate::support::linearizable::{self, Call, Operation, Verdict};
use crate::support::proxy::Mode;
use crate::support::total_queue::{Outcome, QueueHistory};
use crate::support::Cluster;

mod nemesis;
mod workers;

use nemesis::*;
use workers::*;

/// The keys kv workers use; a run takes the first [`key_count`] of them.
const KEYS: &[&str] = &[
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t",
];
const MAP: &str = "chaos";
const QUEUE: &str = "chaos-q";
/// A call that has not answered by then has an unknown outcome.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const LEASE_MS: u64 = 3000;

/// Shared by the workers: the start of the clock, and where the cluster is.
#[derive(Clone)]
struct Env {
    t0: Instant,
    addrs: Vec<(u64, String)>,
    token: String,
    stop: Arc<AtomicBool>,
    /// How many of [`KEYS`] the kv workers spread over.
    keys: usize,
}

/// Keys for a run of `secs` seconds of faults: 4, and one more per 15 s up to 20, so each
/// key's history stays small enough for the linearizability checker (its cost grows fast with
/// a history's length and its unknown outcomes) on a long run.
fn key_count(secs: u64) -> usize {
    ((secs / 15) as usize).clamp(4, KEYS.len())
}

/// How one call ended.
enum Answer {
    Ok(Reply),
    /// Definitely not applied (never sent, or the node said no leader would take it).
    Failed,
    /// Sent; the answer was lost, late or an error that does not rule out the effect.
    Unknown,
}

/// A client that reconnects to its node (then to the others) after errors.
struct Conn {
    env: Env,
    home: usize,
    client: Option<Client>,
    tries: usize,
}

impl Conn {
    fn new(env: &Env, home: usize) -> Conn {
        Conn {
            env: env.clone(),
            home,
            client: None,
            tries: 0,
        }
    }

    async fn call(&mut self, op: Op) -> Answer {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let (_, addr) = &self.env.addrs[(self.home + self.tries) % self.env.addrs.len()];
            self.tries += 1;
            self.client = match tokio::time::timeout(
                Duration::from_secs(1),
                Client::connect(addr, &self.env.token),
            )
            .await
            {
                Ok(Ok(c)) => Some(c),
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Answer::Failed;
                }
            };
        }
        let client = self.client.as_ref().expect("connected above");
        match tokio::time::timeout(CALL_TIMEOUT, client.call(op)).await {
            Ok(Ok(reply)) => Answer::Ok(reply),
            Ok(Err(ClientError::Server(body))) if body.code == ErrorCode::NoLeader => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Answer::Failed
            }
            Ok(Err(ClientError::Server(_))) => Answer::Unknown,
            Ok(Err(_)) | Err(_) => {
                self.client = None;
                Answer::Unknown
            }
        }
    }
}

fn int(v: &Option<Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        None => None,
        Some(other) => panic!("unexpected value {other:?} in the chaos map"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_kills_pauses_and_partitions_while_kv_stays_linearizable_and_the_queue_total() {
    let secs: u64 = std::env::var("PUSH_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut cluster = Cluster::start_partitionable(3, &[]).await;
    deploy(&cluster, 1, 1);
    let env = Env {
        t0: Instant::now(),
        addrs: cluster
            .nodes
            .iter()
            .map(|n| (n.id, n.addr.clone()))
            .collect(),
        token: cluster.token.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        keys: key_count(secs),
    };
    let queue = Arc::new(Mutex::new(QueueHistory::default()));
    let kv_workers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(kv_worker(env.clone(), w)))
        .collect();
    let mut queue_workers: Vec<_> = (0..2)
        .map(|p| tokio::spawn(producer(env.clone(), p, queue.clone())))
        .collect();
    queue_workers.extend((0..2).map(|c| {
        tokio::spawn(consumer(
            env.clone(),
            format!("consumer{c}"),
            c + 1,
            queue.clone(),
        ))
    }));

    let mut faults = Faults::default();
    let until = Instant::now() + Duration::from_secs(secs);
    nemesis(&mut cluster, until, &mut faults).await;
    let left = until.saturating_duration_since(Instant::now());
    tokio::time::sleep(left).await;

    // Heal everything and let the clients run briefly on a whole cluster, then stop them.
    cluster.heal();
    cluster.wait_leader(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.stop.store(true, Ordering::Relaxed);
    let stop_by = Duration::from_secs(10);
    let mut kv_history: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    let mut kv_counts = Counts::default();
    for w in kv_workers {
        let (h, c) = tokio::time::timeout(stop_by, w)
            .await
            .expect("a kv client did not stop: the cluster is wedged")
            .expect("kv client panicked");
        for (k, ops) in h {
            kv_history.entry(k).or_default().extend(ops);
        }
        kv_counts += c;
    }
    let mut q_counts = Counts::default();
    for w in queue_workers {
        q_counts += tokio::time::timeout(stop_by, w)
            .await
            .expect("a queue client did not stop: the cluster is wedged")
            .expect("queue client panicked");
    }

    // Drain: leases from the chaos run end, their items come back, and get taken and acked.
    let drain = Env {
        stop: Arc::new(AtomicBool::new(false)),
        ..env.clone()
    };
    let drainers: Vec<_> = (0..4)
        .map(|d| {
            tokio::spawn(consumer(
                drain.clone(),
                format!("drain{d}"),
                d,
                queue.clone(),
            ))
        })
        .collect();
    let drain_started = Instant::now();
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let stats_client = cluster.client(leader).await;
    // The backlog grows with the run (producers outpace take+ack under faults), so the bound
    // does too: 60 s plus the run's length. A queue that stops shrinking fails sooner.
    let drain_limit = Duration::from_secs(60 + secs);
    let stall_limit = Duration::from_secs(30);
    let (mut smallest, mut shrank_at) = (u64::MAX, Instant::now());
    let final_stats = loop {
        assert!(
            drain_started.elapsed() < drain_limit && shrank_at.elapsed() < stall_limit,
            "the queue did not drain: {smallest} items left after {:?} (limit {drain_limit:?}), \
             none taken for {:?}\n{}",
            drain_started.elapsed(),
            shrank_at.elapsed(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(Ok(Reply::QueueStats(stats))) =
            tokio::time::timeout(Duration::from_secs(2), stats_client.call(Op::QueueStats)).await
        else {
            continue;
        };
        if let Some(s) = stats.into_iter().find(|s| s.name == QUEUE) {
            if s.ready == 0 && s.leased == 0 {
                break s;
            }
            let left = (s.ready + s.leased) as u64;
            if left < smallest {
                (smallest, shrank_at) = (left, Instant::now());
            }
        }
    };
    drain.stop.store(true, Ordering::Relaxed);
    for d in drainers {
        q_counts += tokio::time::timeout(stop_by, d)
            .await
            .expect("a drainer did not stop")
            .expect("drainer panicked");
    }
    let drain_time = drain_started.elapsed();

    // Checks.
    let check_started = Instant::now();
    // A longer run has longer histories: 20 s per key, and 1 s more per 10 s of faults.
    let verdicts = linearizable::check_keys(&kv_history, Duration::from_secs(20 + secs / 10));
    let kv_check_time = check_started.elapsed();
    // The checker is wired to this history: one read planted with a value nobody wrote must
    // make its key fail.
    if let Some((key, ops)) = kv_history.iter().max_by_key(|(_, ops)| ops.len()) {
        let mut planted = ops.clone();
        if let Some(read) = planted
            .iter_mut()
            .find(|o| matches!(o.call, Call::Read(_)) && o.end.is_some())
        {
            read.call = Call::Read(Some(-1));
            assert_eq!(
                linearizable::check(&planted, None, Duration::from_secs(20)),
                Verdict::NotLinearizable,
                "a planted bad read on key {key} went unnoticed"
            );
        }
    }
    let unknown_per_key: BTreeMap<&String, usize> = kv_history
        .iter()
        .map(|(k, ops)| (k, ops.iter().filter(|o| o.end.is_none()).count()))
        .collect();
    let check_started = Instant::now();
    let queue_result = queue.lock().expect("history").check();
    let queue_check_time = check_started.elapsed();

    // Convergence: a new HEAD through the healed cluster, then every node at the leader's
    // last index must show the same kv contents, queue numbers and HEADs.
    deploy(&cluster, 2, 2);
    let converge_started = Instant::now();
    let mut views = BTreeMap::new();
    loop {
        assert!(
            converge_started.elapsed() < Duration::from_secs(30),
            "nodes did not converge within 30 s: {views:#?}\n{}",
            cluster.logs()
        );
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        let Some(last) = cluster.status(leader).await.and_then(|s| s.last_log_index) else {
            continue;
        };
        cluster.wait_applied(1, last, Duration::from_secs(20)).await;
        cluster.wait_applied(2, last, Duration::from_secs(20)).await;
        cluster.wait_applied(3, last, Duration::from_secs(20)).await;
        views.clear();
        for id in 1..=3 {
            views.insert(id, applied_view(&cluster, id).await);
        }
        let first = &views[&1];
        if first.is_some() && views.values().all(|v| v == first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converge_time = converge_started.elapsed();

    eprintln!(
        "chaos summary ({secs} s of faults): kv ops ok {} / failed {} / unknown {}; \
         queue ops ok {} / failed {} / unknown {}; faults: {} kills, {} pauses, {} partitions; \
         kv history {} ops on {} keys, unknown per key {:?}, checked in {:?} -> {:?}; \
         queue {:?} checked in {:?}; {:?} after a drain of {:?}; converged in {:?}",
        kv_counts.ok,
        kv_counts.failed,
        kv_counts.unknown,
        q_counts.ok,
        q_counts.failed,
        q_counts.unknown,
        faults.kills,
        faults.pauses,
        faults.partitions,
        kv_history.values().map(Vec::len).sum::<usize>(),
        kv_history.len(),
        unknown_per_key,
        kv_check_time,
        verdicts,
        queue_result,
        queue_check_time,
        final_stats,
        drain_time,
        converge_time,
    );
    assert!(
        (faults.kills > 0 && faults.pauses > 0 && faults.partitions > 0) || secs < 12,
        "every kind of fault should have been injected: {faults:?}"
    );
    assert!(
        kv_counts.ok > 50,
        "too few kv operations succeeded: {kv_counts:?}"
    );
    for (key, verdict) in &verdicts {
        assert_eq!(
            *verdict,
            Verdict::Linearizable,
            "key {key}: history of {} ops is not linearizable (or the check timed out)",
            kv_history[key].len()
        );
    }
    let summary = queue_result.unwrap_or_else(|errors| panic!("queue is not total: {errors:#?}"));
    assert!(summary.puts_ok > 10, "too few puts succeeded: {summary:?}");
    // The node's own counters agree: everything put was acked exactly once, and at least what
    // clients saw succeed.
    assert_eq!(final_stats.puts, final_stats.acks, "{final_stats:?}");
    assert!(
        final_stats.puts as usize >= summary.puts_ok
            && final_stats.puts as usize <= summary.puts_ok + summary.puts_unknown,
        "the queue counted {} puts; clients saw {summary:?}",
        final_stats.puts
    );
    let view = views[&1].as_deref().unwrap_or_default();
    assert!(
        view.contains(r#"heads [("main", 2)]"#),
        "every node should serve HEAD v2 of the app: {view}"
    );
}
