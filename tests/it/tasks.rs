//! Tasks on a real 3-node cluster: daemon placement, reassignment after kill -9, restarts of
//! only the daemons whose code changed, crash backoff, schedules firing once per period,
//! placement by tag, lambdas, timeseries with retention and partitioned handlers, and
//! 10,000 queue items through consumer daemons while a consumer's node is killed.

use std::path::Path;
use std::time::{Duration, Instant};

use push_protocol::{Client, DaemonRow, Op, ReadMode, Reply, Value};

use crate::support::cluster::{get, ok};
use crate::support::Cluster;

fn write_app(dir: &Path, source: &str) -> String {
    std::fs::create_dir_all(dir).expect("app dir");
    std::fs::write(dir.join("app.py"), source).expect("write app");
    dir.display().to_string()
}

async fn daemons(client: &Client) -> Vec<DaemonRow> {
    match client.call(Op::Daemons).await {
        Ok(Reply::Daemons(rows)) => rows,
        other => panic!("daemons: {other:?}"),
    }
}

/// Polls `check` every 200 ms until it returns Some, or panics with `what` and the logs.
async fn wait_for<T, F, Fut>(cluster: &Cluster, what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {within:?} waiting for {what}\n{}",
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn int(client: &Client, map: &str, key: &str) -> i64 {
    match get(client, map, key, ReadMode::Linearizable).await {
        Some(Value::Int(i)) => i,
        _ => 0,
    }
}

fn running_on(rows: &[DaemonRow], unit: &str) -> Vec<u64> {
    rows.iter()
        .filter(|r| r.unit == unit && r.state == "running")
        .filter_map(|r| r.node)
        .collect()
}

const DAEMONS_V1: &str = r#"
import push

starts = push.kv("starts")
seen = push.kv("seen")


def count_start(name):
    while True:
        n = starts.get(name)
        if starts.cas(name, n, (n or 0) + 1):
            return


@push.daemon
def steady(ctx):
    count_start("steady")
    beats = 0  # in-memory state: survives a deploy only if the daemon is not restarted
    while ctx.sleep(0.2):
        beats += 1
        seen.set("steady", beats)


@push.daemon
def changing(ctx):
    count_start("changing")
    while ctx.sleep(0.2):
        seen.set("changing", "v1")


@push.daemon
def crasher(ctx):
    raise ValueError("boom from the crasher")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_restart_only_when_changed_move_on_kill_and_crash_visibly() {
    let mut cluster = Cluster::start(3).await;
    let c1 = cluster.client(1).await;
    let dir = cluster.dir.path().join("app");
    let app = write_app(&dir, DAEMONS_V1);
    ok(&cluster.cli(&["deploy", &app, "--to", &cluster.addr(1)]));

    wait_for(
        &cluster,
        "both daemons to start once",
        Duration::from_secs(20),
        || async {
            (int(&c1, "starts", "steady").await == 1 && int(&c1, "starts", "changing").await == 1)
                .then_some(())
        },
    )
    .await;
    // The crasher crashes, is restarted with backoff, and its crash is visible.
    let row = wait_for(
        &cluster,
        "the crasher's crash to show",
        Duration::from_secs(20),
        || async {
            daemons(&c1)
                .await
                .into_iter()
                .find(|r| r.unit == "crasher" && r.error.is_some() && r.restarts >= 1)
        },
    )
    .await;
    assert!(
        row.error
            .as_deref()
            .unwrap_or("")
            .contains("boom from the crasher"),
        "{row:?}"
    );
    let table = ok(&cluster.cli(&["daemons", "--to", &cluster.addr(2)]));
    assert!(
        table.contains("crasher") && table.contains("last crash: ValueError"),
        "{table}"
    );
    let tail = ok(&cluster.cli(&["tail", "crasher", "--to", &cluster.addr(3)]));
    assert!(tail.contains("boom from the crasher"), "{tail}");

    // Deploy v2: only `changing` changed. `steady` keeps running with its in-memory count.
    let before = int(&c1, "seen", "steady").await;
    write_app(&dir, &DAEMONS_V1.replace("\"v1\")", "\"v2\")"));
    ok(&cluster.cli(&["deploy", &app, "--to", &cluster.addr(2)]));
    wait_for(&cluster, "changing to restart on v2", Duration::from_secs(20), || async {
        (matches!(get(&c1, "seen", "changing", ReadMode::Linearizable).await, Some(Value::Str(s)) if s == "v2"))
            .then_some(())
    })
    .await;
    assert_eq!(int(&c1, "starts", "changing").await, 2);
    assert_eq!(
        int(&c1, "starts", "steady").await,
        1,
        "an unchanged daemon was restarted"
    );
    assert!(
        int(&c1, "seen", "steady").await > before,
        "steady lost its in-memory state"
    );

    // `push restart` restarts it wherever it runs.
    let out = ok(&cluster.cli(&["restart", "changing", "--to", &cluster.addr(3)]));
    assert!(out.contains("main/changing"), "{out}");
    wait_for(
        &cluster,
        "changing to restart",
        Duration::from_secs(20),
        || async { (int(&c1, "starts", "changing").await == 3).then_some(()) },
    )
    .await;

    // kill -9 the node running `steady`: it moves to a live node within seconds.
    let victim = running_on(&daemons(&c1).await, "steady")[0];
    let watcher = if victim == 1 { 2 } else { 1 };
    let client = cluster.client(watcher).await;
    cluster.kill(victim);
    let killed_at = Instant::now();
    let moved_to = wait_for(
        &cluster,
        "steady to move",
        Duration::from_secs(30),
        || async {
            running_on(&daemons(&client).await, "steady")
                .into_iter()
                .find(|n| *n != victim)
        },
    )
    .await;
    eprintln!(
        "steady moved from node {victim} to {moved_to} in {:?}",
        killed_at.elapsed()
    );
    wait_for(
        &cluster,
        "steady to start on its new node",
        Duration::from_secs(20),
        || async { (int(&client, "starts", "steady").await == 2).then_some(()) },
    )
    .await;
    let registry = ok(&cluster.cli(&["registry", "--to", &cluster.addr(watcher)]));
    assert!(registry.contains("DOWN"), "{registry}");
}

const SCHEDULES: &str = r#"
import time
import push

counts = push.kv("counts")
readings = push.timeseries("temps", max_points=50, partitions=3)


def bump(key):
    while True:
        n = counts.get(key)
        if counts.cas(key, n, (n or 0) + 1):
            return


@push.every("1s")
def tick():
    bump("tick")


@push.every("1s", on="all")
def everywhere(ctx):
    bump(f"all-{ctx.node}")


@push.daemon(where="gpu")
def trainer(ctx):
    counts.set("trainer-node", ctx.node)
    while ctx.sleep(0.5):
        pass


@readings.handler
def per_key(point):
    bump(f"key-{point.key}")
    counts.set(f"partition-{point.key}", push.node.id)


def where_am_i(extra):
    return {"node": push.node.id, "extra": extra}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_once_per_period_tags_place_lambdas_and_timeseries() {
    let mut cluster = Cluster::start(2).await;
    cluster.add_node(3, &["--tag", "gpu"]);
    cluster.wait_voters(3, Duration::from_secs(30)).await;
    cluster.wait_joined([3]).await;
    let c = cluster.client(2).await;
    let dir = cluster.dir.path().join("app");
    let app = write_app(&dir, SCHEDULES);
    ok(&cluster.cli(&["deploy", &app, "--to", &cluster.addr(1)]));

    // Placement by tag: the trainer runs on node 3 only.
    wait_for(
        &cluster,
        "the trainer on the gpu node",
        Duration::from_secs(20),
        || async { (int(&c, "counts", "trainer-node").await == 3).then_some(()) },
    )
    .await;
    let out = ok(&cluster.cli(&[
        "eval",
        "--to",
        &cluster.addr(1),
        "print([(n['id'], n['alive'], n['tags']) for n in push.cluster.nodes()])",
    ]));
    assert!(
        out.contains("(1, True, []), (2, True, []), (3, True, ['gpu'])"),
        "{out}"
    );
    let rows = daemons(&c).await;
    let trainer: Vec<_> = rows.iter().filter(|r| r.unit == "trainer").collect();
    assert_eq!(trainer.len(), 1, "{rows:?}");
    assert_eq!(trainer[0].node, Some(3));

    // A 1 s schedule fires once per period in the whole cluster (3 nodes, not 3x).
    wait_for(
        &cluster,
        "the first tick",
        Duration::from_secs(20),
        || async { (int(&c, "counts", "tick").await >= 1).then_some(()) },
    )
    .await;
    let start = int(&c, "counts", "tick").await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let fired = int(&c, "counts", "tick").await - start;
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        (fired as f64) >= secs - 2.0 && (fired as f64) <= secs + 1.0,
        "{fired} firings in {secs:.1}s"
    );
    // on="all": every node runs each firing.
    for node in 1..=3 {
        assert!(
            int(&c, "counts", &format!("all-{node}")).await >= 3,
            "node {node} missed firings"
        );
    }

    // Lambdas: a module function by path, on all nodes, on a tag, and a REPL-defined one.
    let out = ok(&cluster.cli(&[
        "eval",
        "--to",
        &cluster.addr(1),
        "r = push.run('app:where_am_i', 7, on='all'); print(sorted(r), r[3])",
    ]));
    assert!(out.contains("[1, 2, 3] {'node': 3, 'extra': 7}"), "{out}");
    let out = ok(&cluster.cli(&[
        "eval",
        "--to",
        &cluster.addr(2),
        "def twice(x):\n    return x * 2\nprint(push.run(twice, 21, on='tag:gpu'), push.run(twice, 4, on=1))",
    ]));
    assert!(out.contains("{3: 42} 8"), "{out}");
    let out = cluster.cli(&[
        "eval",
        "--to",
        &cluster.addr(2),
        "push.run(lambda: 1 / 0, on=3)",
    ]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ZeroDivisionError") && text.contains("RemoteError"),
        "{text}"
    );

    // Timeseries: range, last, retention by count, and partitioned handlers.
    let out = ok(&cluster.cli(&[
        "eval",
        "--to",
        &cluster.addr(1),
        "s = push.timeseries('temps', max_points=50, partitions=3)\n\
         s.append_many([(1000 + i, f'k{i % 6}', i) for i in range(60)])\n\
         print(len(s), s.last(1), len(s.range(1020, 1030)), s.range(1000, 1010))",
    ]));
    assert!(out.starts_with("50 [(1059.0, 'k5', 59)] 10 []"), "{out}");
    let out = ok(&cluster.cli(&[
        "eval",
        "--to",
        &cluster.addr(1),
        "a = push.timeseries('aged', keep='2s')\n\
         import time\n\
         a.append_many([(time.time() - 60, None, 'old'), (time.time(), None, 'new')])\n\
         print([v for _, _, v in a.range()])",
    ]));
    assert!(out.contains("['new']"), "retention by age: {out}");
    // Every one of the 60 points reached the handler of its key's partition (at least once,
    // each key on one node at a time), also the 10 retention dropped from the series at once:
    // handlers read those from the backlog kept for them.
    wait_for(
        &cluster,
        "the handlers to see all 60 points appended (retention keeps 50)",
        Duration::from_secs(30),
        || async {
            let mut total = 0;
            for k in 0..6 {
                total += int(&c, "counts", &format!("key-k{k}")).await;
            }
            (total >= 60).then_some(())
        },
    )
    .await;
    let rows = daemons(&c).await;
    let parts: Vec<_> = rows
        .iter()
        .filter(|r| r.unit.starts_with("per_key["))
        .collect();
    assert_eq!(parts.len(), 3, "{rows:?}");
    let ts = ok(&cluster.cli(&["ts", "--to", &cluster.addr(3)]));
    // The row itself: 50 points kept of 60 appended, in 3 partitions (the RETENTION column
    // also says "50 points", so a substring proves nothing).
    let row: Vec<&str> = ts
        .lines()
        .find(|l| l.starts_with("temps "))
        .unwrap_or_else(|| panic!("no temps row: {ts}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..4], ["50", "60", "3"], "{ts}");
}

const CONSUMERS: &str = r#"
import push

jobs = push.queue("jobs")
done = push.kv("done")
dups = push.kv("dups")


@push.daemon(replicas=2)
def consumer(ctx):
    while not ctx.stopping.is_set():
        item = jobs.take(timeout=0.5, lease=3)
        if item is None:
            continue
        if not done.cas(str(item.value), None, item.deliveries):
            dups.set(f"{item.value}-{item.deliveries}", item.deliveries)
        item.ack()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_items_through_consumer_daemons_with_a_node_killed() {
    const N: i64 = 10_000;
    let mut cluster = Cluster::start(3).await;
    let c = cluster.client(1).await;
    let dir = cluster.dir.path().join("app");
    let app = write_app(&dir, CONSUMERS);
    ok(&cluster.cli(&["deploy", &app, "--to", &cluster.addr(1)]));
    for batch in 0..(N / 500) {
        let values = (batch * 500..(batch + 1) * 500).map(Value::Int).collect();
        match c
            .call(Op::QueuePut {
                queue: "jobs".into(),
                values,
            })
            .await
        {
            Ok(Reply::Put { ids }) => assert_eq!(ids.len(), 500),
            other => panic!("put: {other:?}"),
        }
    }
    let count = |client: Client| async move {
        match client
            .call(Op::KvList {
                map: "done".into(),
                prefix: String::new(),
                read: ReadMode::Linearizable,
            })
            .await
        {
            Ok(Reply::Keys(k)) => k.len(),
            other => panic!("list: {other:?}"),
        }
    };
    // Kill a consumer's node (not node 1, which this test talks to) a third of the way in.
    wait_for(
        &cluster,
        "a third of the items",
        Duration::from_secs(120),
        || async { (count(cluster.client(1).await).await >= (N / 3) as usize).then_some(()) },
    )
    .await;
    let consumers = running_on(&daemons(&c).await, "consumer");
    let victim = consumers.iter().copied().find(|n| *n != 1).unwrap_or(2);
    cluster.kill(victim);
    eprintln!("killed node {victim} (consumers ran on {consumers:?})");
    let t0 = Instant::now();
    wait_for(
        &cluster,
        "every item processed",
        Duration::from_secs(300),
        || async { (count(cluster.client(1).await).await == N as usize).then_some(()) },
    )
    .await;
    eprintln!("the rest took {:?}", t0.elapsed());
    // Queue drained: nothing ready, nothing leased.
    wait_for(
        &cluster,
        "the queue to drain",
        Duration::from_secs(30),
        || async {
            match c.call(Op::QueueStats).await {
                Ok(Reply::QueueStats(s)) => s
                    .iter()
                    .find(|q| q.name == "jobs")
                    .filter(|q| q.ready == 0 && q.leased == 0 && q.acks == N as u64)
                    .map(|_| ()),
                _ => None,
            }
        },
    )
    .await;
    // A second processing happens only for an item whose lease ran out unacked (its
    // consumer's node died): redelivered, never after an ack.
    let dup_keys = match c
        .call(Op::KvList {
            map: "dups".into(),
            prefix: String::new(),
            read: ReadMode::Linearizable,
        })
        .await
    {
        Ok(Reply::Keys(k)) => k,
        other => panic!("{other:?}"),
    };
    assert!(
        dup_keys.len() <= 4,
        "too many second processings: {dup_keys:?}"
    );
    for k in &dup_keys {
        let deliveries: u32 = k
            .rsplit('-')
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        assert!(
            deliveries >= 2,
            "{k} was processed twice on its first delivery"
        );
    }
}

/// Every example under `examples/` deploys (the gate imports it) and its tasks start; the
/// REPL's `:daemons`, `:ts`, `:registry` and `:tail` show them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_deploys_and_the_repl_shows_its_tasks() {
    let cluster = Cluster::start(3).await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in [
        "queue-workers",
        "schedule",
        "gpu-daemon",
        "timeseries",
        "lambda",
    ] {
        let dir = examples.join(name).display().to_string();
        let out = ok(&cluster.cli(&["deploy", &dir, "--app", name, "--to", &cluster.addr(1)]));
        assert!(out.contains("deployed"), "{name}: {out}");
    }
    let c = cluster.client(1).await;
    wait_for(
        &cluster,
        "the examples' daemons to run",
        Duration::from_secs(30),
        || async {
            let rows = daemons(&c).await;
            let running = |unit: &str| rows.iter().any(|r| r.unit == unit && r.state == "running");
            (running("producer") && running("generator") && running("summarise[0]")).then_some(())
        },
    )
    .await;
    // Running is not enough: the REPL reads the generator's series and the producer's log,
    // so wait until the first points and the first batch are there.
    let a1 = cluster.addr(1);
    wait_for(
        &cluster,
        "the generator's first points and the producer's first batch",
        Duration::from_secs(30),
        || async {
            let points = ok(&cluster.cli(&[
                "ts",
                "readings",
                "--last",
                "1",
                "--app",
                "timeseries",
                "--to",
                &a1,
            ]));
            let tail = cluster.cli(&["tail", "producer", "--to", &a1]);
            let tail = String::from_utf8_lossy(&tail.stdout).to_string();
            (points.contains("sensor-") && tail.contains("queued 50 jobs")).then_some(())
        },
    )
    .await;
    let (_, out, err) = crate::repl::run_script(
        &cluster,
        ":daemons\n:registry\n:tail producer\n:app timeseries\n:ts\n:ts readings\n",
    );
    for want in [
        "queue-workers/consumer",
        "timeseries/summarise[3]",
        "gpu-daemon/trainer",
        "unplaced",
        "readings",
        "sensor-",
        "CORES",
        "queued 50 jobs",
    ] {
        assert!(
            out.contains(want),
            "{want:?} missing from the REPL's output:\n{out}\n{err}"
        );
    }
}
