//! The node's Prometheus counters and histograms: what the hot paths bump.
//!
//! **Architecture Invariant:** a leaf. It imports nothing of the node, consensus or server, so
//! the log store, the state machine and the edge can all bump it; the `/metrics` page that
//! adds levels read at scrape time lives in the front (`server::metrics_page`).
//!
//! Two kinds of metric live here. Events (requests, evals, fsyncs, leader changes) are counted
//! where they happen, in a process-wide [`Metrics`] whose counters are atomics; recording one
//! takes no lock of Push's own. Levels (Raft indexes, queue depths, memory) are not here: the
//! page reads them once per scrape from their owners, so no request pays for them.
//!
//! One node runs per process, so the registry is a process global ([`metrics`]); the log
//! store and state machine reach it without plumbing.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use push_protocol::{ErrorCode, Op, UnitReport};

/// Latency buckets in seconds, 100 µs to 10 s: fsyncs and kv writes sit at the low end,
/// evals and handlers anywhere.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Metrics counted where events happen.
pub struct Metrics {
    registry: Registry,
    /// Client requests by op kind and whether they came from a client or another node.
    pub ops: IntCounterVec,
    pub op_seconds: HistogramVec,
    /// Failed client requests by op kind and error code.
    pub op_errors: IntCounterVec,
    pub evals: IntCounter,
    pub eval_errors: IntCounter,
    pub eval_seconds: Histogram,
    /// HTTP requests by app, method and status class (`2xx`).
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    /// One observation per batch the log writer makes durable (write + fdatasync).
    pub log_fsync_seconds: Histogram,
    pub log_fsync_records: IntCounter,
    /// Client writes per Raft entry the leader's group commit proposed.
    pub proposal_ops: Histogram,
    pub leader_changes: IntCounter,
    /// Python worker processes that ended and were replaced.
    pub worker_restarts: IntCounter,
    /// Snapshots built here or installed from the leader.
    pub snapshots: IntCounterVec,
    /// From the latest task report: restarts per unit and units running per app.
    pub daemon_restarts: IntGaugeVec,
    pub units_running: IntGaugeVec,
    /// Open connections by listener (`node`, `http`) and stage (`waiting`: before the hello
    /// or first request; `client`, `peer`, `active`: after it). Bumped by `server::limits`.
    pub connections: IntGaugeVec,
    /// Connections the node closed on its own, by listener and reason (`full`, `per_ip`,
    /// `evicted`, `deadline`).
    pub connections_closed: IntCounterVec,
    /// Failed `accept` calls by listener (EMFILE and the like).
    pub accept_errors: IntCounterVec,
}

fn histogram_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            ops: IntCounterVec::new(
                Opts::new(
                    "push_client_ops_total",
                    "Client requests handled by this node.",
                ),
                &["op", "via"],
            )?,
            op_seconds: HistogramVec::new(
                histogram_opts(
                    "push_client_op_seconds",
                    "Time to answer a client request, by op.",
                ),
                &["op"],
            )?,
            op_errors: IntCounterVec::new(
                Opts::new(
                    "push_client_op_errors_total",
                    "Client requests answered with an error, by op and error code.",
                ),
                &["op", "code"],
            )?,
            evals: IntCounter::new("push_evals_total", "Python evaluations run on this node.")?,
            eval_errors: IntCounter::new(
                "push_eval_errors_total",
                "Evaluations whose code raised (or that could not run).",
            )?,
            eval_seconds: Histogram::with_opts(histogram_opts(
                "push_eval_seconds",
                "Wall time of an evaluation.",
            ))?,
            http_requests: IntCounterVec::new(
                Opts::new(
                    "push_http_requests_total",
                    "App HTTP requests by app, method and status class.",
                ),
                &["app", "method", "status"],
            )?,
            http_seconds: HistogramVec::new(
                histogram_opts(
                    "push_http_request_seconds",
                    "Time to answer an app HTTP request.",
                ),
                &["app", "method"],
            )?,
            log_fsync_seconds: Histogram::with_opts(histogram_opts(
                "push_raft_log_fsync_seconds",
                "Time to write and fdatasync one batch of Raft log records.",
            ))?,
            log_fsync_records: IntCounter::new(
                "push_raft_log_records_total",
                "Raft log records made durable by an fdatasync (appends, votes, truncations, \
                 purges; committed indexes ride along with the next one).",
            )?,
            proposal_ops: Histogram::with_opts(
                HistogramOpts::new(
                    "push_raft_proposal_ops",
                    "Client writes grouped into one Raft entry by the leader's group commit.",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            )?,
            worker_restarts: IntCounter::new(
                "push_python_worker_restarts_total",
                "Python worker processes that ended (crash, signal, memory limit, stuck handler) and were replaced.",
            )?,
            leader_changes: IntCounter::new(
                "push_raft_leader_changes_total",
                "Times this node saw the cluster's leader change (including to none).",
            )?,
            snapshots: IntCounterVec::new(
                Opts::new(
                    "push_raft_snapshots_total",
                    "Snapshots built here or installed from the leader.",
                ),
                &["kind"],
            )?,
            daemon_restarts: IntGaugeVec::new(
                Opts::new(
                    "push_daemon_restarts",
                    "Restarts of a daemon unit since it started on this node (from its report).",
                ),
                &["app", "unit"],
            )?,
            units_running: IntGaugeVec::new(
                Opts::new(
                    "push_units_running",
                    "Daemon units and schedule firings running on this node.",
                ),
                &["app"],
            )?,
            connections: IntGaugeVec::new(
                Opts::new(
                    "push_connections",
                    "Open connections by listener and stage (waiting, client, peer, active).",
                ),
                &["listener", "stage"],
            )?,
            connections_closed: IntCounterVec::new(
                Opts::new(
                    "push_connections_closed_total",
                    "Connections the node closed itself (budget full, per-IP cap, evicted, deadline).",
                ),
                &["listener", "reason"],
            )?,
            accept_errors: IntCounterVec::new(
                Opts::new(
                    "push_accept_errors_total",
                    "Failed accepts (such as EMFILE: out of file descriptors).",
                ),
                &["listener"],
            )?,
            registry,
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.ops.clone()),
            Box::new(m.op_seconds.clone()),
            Box::new(m.op_errors.clone()),
            Box::new(m.evals.clone()),
            Box::new(m.eval_errors.clone()),
            Box::new(m.eval_seconds.clone()),
            Box::new(m.http_requests.clone()),
            Box::new(m.http_seconds.clone()),
            Box::new(m.log_fsync_seconds.clone()),
            Box::new(m.log_fsync_records.clone()),
            Box::new(m.proposal_ops.clone()),
            Box::new(m.leader_changes.clone()),
            Box::new(m.worker_restarts.clone()),
            Box::new(m.snapshots.clone()),
            Box::new(m.daemon_restarts.clone()),
            Box::new(m.units_running.clone()),
            Box::new(m.connections.clone()),
            Box::new(m.connections_closed.clone()),
            Box::new(m.accept_errors.clone()),
        ];
        for c in collectors {
            m.registry.register(c)?;
        }
        // Present from the first scrape, so a rate over them starts at zero.
        for kind in ["built", "installed"] {
            m.snapshots.with_label_values(&[kind]);
        }
        Ok(m)
    }

    /// Counts one answered client request.
    pub fn op(&self, kind: &str, forwarded: bool, took: Duration, error: Option<ErrorCode>) {
        let via = if forwarded { "node" } else { "client" };
        self.ops.with_label_values(&[kind, via]).inc();
        self.op_seconds
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
        if let Some(code) = error {
            self.op_errors
                .with_label_values(&[kind, &format!("{code:?}")])
                .inc();
        }
    }

    /// Counts one evaluation.
    pub fn eval(&self, took: Duration, failed: bool) {
        self.evals.inc();
        self.eval_seconds.observe(took.as_secs_f64());
        if failed {
            self.eval_errors.inc();
        }
    }

    /// Counts one app HTTP request.
    pub fn http(&self, app: &str, method: &str, status: u16, took: Duration) {
        let class = match status {
            100..=599 => format!("{}xx", status / 100),
            _ => "other".to_string(),
        };
        self.http_requests
            .with_label_values(&[app, method, &class])
            .inc();
        self.http_seconds
            .with_label_values(&[app, method])
            .observe(took.as_secs_f64());
    }

    /// Replaces the unit gauges with what this node's latest task report says.
    pub fn units(&self, reports: &[UnitReport]) {
        self.daemon_restarts.reset();
        self.units_running.reset();
        for r in reports {
            if r.kind != "schedule" {
                self.daemon_restarts
                    .with_label_values(&[&r.app, &r.unit])
                    .set(r.restarts as i64);
            }
            let running = self.units_running.with_label_values(&[&r.app]);
            if r.state == "running" {
                running.inc();
            }
        }
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Counts one Python worker that ended and is being replaced.
pub fn worker_restarted() {
    metrics().worker_restarts.inc();
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| match Metrics::new() {
        Ok(m) => m,
        // Only a duplicate or malformed name can fail, which the unit tests would catch.
        Err(e) => panic!("metric definitions are inconsistent: {e}"),
    })
}

/// The snake-case name of an op, the `op` label of client metrics.
pub fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Ping => "ping",
        Op::Status => "status",
        Op::Join { .. } => "join",
        Op::KvGet { .. } => "kv_get",
        Op::KvList { .. } => "kv_list",
        Op::KvSet { .. } => "kv_set",
        Op::KvDelete { .. } => "kv_delete",
        Op::KvCas { .. } => "kv_cas",
        Op::MissingBlobs { .. } => "missing_blobs",
        Op::PutBlobs { .. } => "put_blobs",
        Op::JoinBlob { .. } => "join_blob",
        Op::Commit { .. } => "commit",
        Op::Versions { .. } => "versions",
        Op::Activate { .. } => "activate",
        Op::Diff { .. } => "diff",
        Op::Files { .. } => "files",
        Op::Forwarded { op, .. } => op_kind(op),
        Op::SessionOpen => "session_open",
        Op::SessionOpenOn { .. } => "session_open_on",
        Op::SessionClose { .. } => "session_close",
        Op::Eval { .. } => "eval",
        Op::Complete { .. } => "complete",
        Op::Inspect { .. } => "inspect",
        Op::IsComplete { .. } => "is_complete",
        Op::Interrupt { .. } => "interrupt",
        Op::EvalAll { .. } => "eval_all",
        Op::QueuePut { .. } => "queue_put",
        Op::QueueTake { .. } => "queue_take",
        Op::QueueAck { .. } => "queue_ack",
        Op::QueuePeek { .. } => "queue_peek",
        Op::QueueStats => "queue_stats",
        Op::Heartbeat(_) => "heartbeat",
        Op::Nodes => "nodes",
        Op::Daemons => "daemons",
        Op::Restart { .. } => "restart",
        Op::Tail { .. } => "tail",
        Op::Run { .. } => "run",
        Op::TsAppend { .. } => "ts_append",
        Op::TsRange { .. } => "ts_range",
        Op::TsStats => "ts_stats",
        Op::TsCursor { .. } => "ts_cursor",
        Op::Audit { .. } => "audit",
        Op::Audited { op, .. } => op_kind(op),
        Op::AuditRecord(_) => "audit_record",
        Op::Logs { .. } => "logs",
        Op::UserAdd { .. } => "user_add",
        Op::UserList => "user_list",
        Op::UserRevoke { .. } => "user_revoke",
        Op::UserRotate { .. } => "user_rotate",
        Op::WhoAmI => "whoami",
        Op::Remove { .. } => "remove",
        Op::JoinLearner { .. } => "join_learner",
        Op::Promote { .. } => "promote",
        Op::SecretSet { .. } => "secret_set",
        Op::Secrets { .. } => "secrets",
        Op::SecretGet { .. } => "secret_get",
        Op::ConfigSet { .. } => "config_set",
        Op::Config { .. } => "config",
        Op::Backup => "backup",
        Op::Platform => "platform",
        Op::Envs => "envs",
        Op::FileSizes { .. } => "file_sizes",
        Op::FilePart { .. } => "file_part",
        Op::Debug { .. } => "debug",
        Op::Publish { .. } => "publish",
    }
}

/// Every event metric as it stands now, for the `/metrics` page.
pub fn gather() -> Vec<prometheus::proto::MetricFamily> {
    metrics().registry.gather()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn definitions_register() {
        let m = metrics();
        m.op("kv_set", false, Duration::from_millis(2), None);
        m.op(
            "kv_set",
            true,
            Duration::from_millis(3),
            Some(ErrorCode::NoLeader),
        );
        m.http("default", "GET", 404, Duration::from_millis(1));
        let families = m.registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for name in [
            "push_client_ops_total",
            "push_client_op_errors_total",
            "push_http_requests_total",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("encodes");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains(r#"push_client_op_errors_total{code="NoLeader",op="kv_set"} "#),
            "{text}"
        );
        assert!(text.contains(r#"status="4xx""#), "{text}");
    }
}
