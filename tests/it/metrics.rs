//! `/metrics` on a real 3-node cluster: a known workload (kv sets, evals of which one raises,
//! HTTP requests to a deployed handler, queue puts, a bad request, daemons, one crashing), then
//! every node is scraped over HTTP and parsed with `prometheus-parse`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value as PromValue};
use push_protocol::{Client, Op, Reply, Value};

use crate::support::cluster::set;
use crate::support::http;
use crate::support::Cluster;

const APP: &str = r#"
import push


@push.route("GET", "/hello")
def hello():
    return "hello"


@push.daemon
def steady(ctx):
    while ctx.sleep(0.2):
        pass


@push.daemon
def flaky():
    raise RuntimeError("flaky crashes on purpose")
"#;

/// One node's parsed `/metrics`.
struct Metrics {
    samples: Vec<Sample>,
    text: String,
}

impl Metrics {
    /// The value of `name` whose labels include all of `labels` (counters, gauges, untyped).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => v,
                _ => f64::NAN,
            })
            .reduce(|a, b| a + b)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape:\n{}", self.text))
    }

    fn is_counter(&self, name: &str) -> bool {
        self.samples
            .iter()
            .any(|s| s.metric == name && matches!(s.value, PromValue::Counter(_)))
    }

    /// Buckets, sum and count of histogram `name` with `labels`: buckets are cumulative, the
    /// `+Inf` bucket equals the count.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> (usize, f64, f64) {
        let sample = self
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no histogram {name}{labels:?}:\n{}", self.text));
        let PromValue::Histogram(buckets) = &sample.value else {
            panic!("{name} is not a histogram: {:?}", sample.value);
        };
        let sum = self.get(&format!("{name}_sum"), labels);
        let count = self.get(&format!("{name}_count"), labels);
        assert!(buckets.len() > 5, "{name} has too few buckets: {buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].count <= w[1].count),
            "{name} buckets are not cumulative: {buckets:?}"
        );
        let inf = buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count);
        assert_eq!(inf, Some(count), "{name}: +Inf bucket != count");
        (buckets.len(), sum, count)
    }
}

async fn scrape(cluster: &Cluster, id: u64) -> Metrics {
    let r = http::get(&cluster.http(id), "/metrics").await;
    assert_eq!(r.status, 200, "GET /metrics on node {id}: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "content type {:?}",
        r.header("content-type")
    );
    let text = r.text();
    let scrape =
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition format parses");
    Metrics {
        samples: scrape.samples,
        text,
    }
}

async fn scrape_all(cluster: &Cluster) -> HashMap<u64, Metrics> {
    let mut out = HashMap::new();
    for id in 1..=3 {
        out.insert(id, scrape(cluster, id).await);
    }
    out
}

async fn eval(client: &Client, code: &str) -> bool {
    let op = Op::Eval {
        session: None,
        code: code.into(),
        module: None,
    };
    match client.call(op).await {
        Ok(Reply::Evaluated(r)) => r.error.is_none(),
        other => panic!("eval {code:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_workload_on_every_node() {
    // Snapshots every 20 entries: the workload makes every node build at least one.
    let cluster = Cluster::start_with(3, &["--snapshot-every", "20"]).await;
    cluster.deploy_app("app", APP, 1, "metrics test");
    let web = cluster.http(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http::get(&web, "/hello").await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "hello never served\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let before = scrape_all(&cluster).await;
    let client = cluster.client(1).await;
    for i in 0..20 {
        set(&client, "m", &format!("k{i}"), Value::Int(i)).await;
    }
    let mut raised = 0;
    for code in ["1 + 1", "y = 2", "3 * 3", "1 / 0", "len('abc')"] {
        if !eval(&client, code).await {
            raised += 1;
        }
    }
    assert_eq!(raised, 1);
    for _ in 0..10 {
        let r = http::get(&web, "/hello").await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(http::get(&web, "/missing").await.status, 404);
    let put = Op::QueuePut {
        queue: "jobs".into(),
        values: vec![Value::Int(1), Value::Int(2)],
    };
    assert!(matches!(client.call(put).await, Ok(Reply::Put { .. })));
    let put = Op::QueuePut {
        queue: "jobs".into(),
        values: vec![Value::Int(3)],
    };
    assert!(matches!(client.call(put).await, Ok(Reply::Put { .. })));
    let bad = Op::Logs {
        after: vec![],
        daemon: None,
        level: Some("loud".into()),
        here: true,
    };
    assert!(
        client.call(bad).await.is_err(),
        "an unknown level is refused"
    );

    // The queue puts reach every node's applied state; the crashing daemon gets reported.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = scrape_all(&cluster).await;
        let queued = after
            .values()
            .all(|m| m.value("push_queue_puts_total", &[("queue", "jobs")]) == Some(3.0));
        let restarts: f64 = after
            .values()
            .filter_map(|m| m.value("push_daemon_restarts", &[("unit", "flaky")]))
            .sum();
        let running: f64 = after
            .values()
            .filter_map(|m| m.value("push_units_running", &[("app", "main")]))
            .sum();
        if queued && restarts >= 1.0 && running >= 1.0 {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "queue puts, daemon restarts or running units never showed\n{}",
            after[&1].text
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    let (b1, a1) = (&before[&1], &after[&1]);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        a1.get(name, labels) - b1.value(name, labels).unwrap_or(0.0)
    };
    // Client ops: exactly the workload's, counted where the client sent them.
    assert!(a1.is_counter("push_client_ops_total"));
    let kv_set = [("op", "kv_set"), ("via", "client")];
    assert_eq!(delta("push_client_ops_total", &kv_set), 20.0);
    assert_eq!(delta("push_client_ops_total", &[("op", "eval")]), 5.0);
    assert_eq!(delta("push_client_ops_total", &[("op", "queue_put")]), 2.0);
    assert_eq!(
        a1.get(
            "push_client_op_errors_total",
            &[("op", "logs"), ("code", "Invalid")]
        ),
        1.0
    );
    let (_, sum, count) = a1.histogram("push_client_op_seconds", &[("op", "kv_set")]);
    let count_before = b1
        .value("push_client_op_seconds_count", &[("op", "kv_set")])
        .unwrap_or(0.0);
    assert_eq!(count - count_before, 20.0);
    assert!(sum > 0.0);

    // Python evals: 5, one raised; all on node 1.
    assert_eq!(delta("push_evals_total", &[]), 5.0);
    assert_eq!(delta("push_eval_errors_total", &[]), 1.0);
    let (_, eval_sum, eval_count) = a1.histogram("push_eval_seconds", &[]);
    assert_eq!(eval_count, a1.get("push_evals_total", &[]));
    assert!(eval_sum > 0.0);

    // HTTP: ten 2xx and one 4xx on node 1's handler, none on the others.
    let ok_2xx = [("app", "main"), ("method", "GET"), ("status", "2xx")];
    assert_eq!(delta("push_http_requests_total", &ok_2xx), 10.0);
    let missing = [("app", "main"), ("method", "GET"), ("status", "4xx")];
    assert_eq!(delta("push_http_requests_total", &missing), 1.0);
    let (_, _, http_count) = a1.histogram(
        "push_http_request_seconds",
        &[("app", "main"), ("method", "GET")],
    );
    assert!(http_count >= 11.0);
    for id in [2, 3] {
        assert_eq!(
            after[&id].value("push_http_requests_total", &ok_2xx),
            None,
            "node {id} served no HTTP"
        );
    }

    // Queues, read from each node's applied state.
    for m in after.values() {
        assert!(m.is_counter("push_queue_puts_total"));
        assert_eq!(m.get("push_queue_ready", &[("queue", "jobs")]), 3.0);
        assert_eq!(m.get("push_queue_leased", &[("queue", "jobs")]), 0.0);
        assert_eq!(m.get("push_queue_acks_total", &[("queue", "jobs")]), 0.0);
    }

    // Raft: one leader, agreeing terms, indexes in order, durable appends timed.
    let leaders: f64 = after
        .values()
        .map(|m| m.get("push_raft_is_leader", &[]))
        .sum();
    assert_eq!(leaders, 1.0);
    let term = a1.get("push_raft_term", &[]);
    assert!(term >= 1.0);
    for (id, m) in &after {
        assert_eq!(m.get("push_raft_term", &[]), term, "node {id} term");
        let applied = m.get("push_raft_applied_index", &[]);
        let committed = m.get("push_raft_committed_index", &[]);
        let last = m.get("push_raft_last_log_index", &[]);
        assert!(applied >= 20.0, "node {id}: applied {applied}");
        assert!(
            applied <= last && committed <= last,
            "node {id}: applied {applied}, committed {committed}, last {last}"
        );
        assert!(m.get("push_raft_leader_changes_total", &[]) >= 1.0);
        let (_, fsync_sum, fsyncs) = m.histogram("push_raft_log_fsync_seconds", &[]);
        assert!(
            fsyncs >= 1.0 && fsync_sum > 0.0,
            "node {id}: {fsyncs} fsyncs"
        );
        assert!(m.get("push_raft_log_records_total", &[]) >= fsyncs);
        assert!(m.is_counter("push_raft_snapshots_total"));
        assert!(
            m.get("push_raft_snapshots_total", &[("kind", "built")]) >= 1.0,
            "node {id} built no snapshot"
        );
        let snapshot = m.get("push_raft_snapshot_index", &[]);
        assert!(
            // The first snapshot covers 20 entries: indexes 0 to 19.
            snapshot >= 19.0 && snapshot <= applied,
            "node {id}: snapshot at {snapshot}, applied {applied}"
        );
        // Process levels from /proc/self.
        assert!(m.get("push_process_resident_memory_bytes", &[]) > 10e6);
        assert!(m.get("push_process_cpu_seconds_total", &[]) > 0.0);
        assert!(m.is_counter("push_process_cpu_seconds_total"));
    }

    // Tasks: the crashing daemon runs (between crashes) on exactly one node.
    let placed: Vec<u64> = after
        .iter()
        .filter(|(_, m)| {
            m.value("push_daemon_restarts", &[("unit", "flaky")])
                .is_some()
        })
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(placed.len(), 1, "flaky reported by {placed:?}");
}
