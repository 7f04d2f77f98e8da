//! The `/metrics` page (Prometheus text format 0.0.4): the event counters of
//! [`crate::metrics`] plus levels read at scrape time — Raft indexes from the Raft metrics
//! channel, queue depths from one short read of the applied state, memory from `/proc/self`.

use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::node::Node;

/// The content type of the `/metrics` page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Levels read at scrape time, in a registry made for one scrape.
fn scrape_levels(node: &Node) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, value: i64| -> Result<(), prometheus::Error> {
        let g = IntGauge::new(name, help)?;
        g.set(value);
        registry.register(Box::new(g))
    };
    let m = node.raft.metrics().borrow().clone();
    let index = |i: Option<u64>| i.map_or(0, |i| i as i64);
    gauge(
        "push_raft_term",
        "Current Raft term.",
        m.current_term as i64,
    )?;
    gauge(
        "push_raft_last_log_index",
        "Index of the last entry in this node's log.",
        index(m.last_log_index),
    )?;
    gauge(
        "push_raft_applied_index",
        "Index of the last entry applied to the state machine.",
        index(m.last_applied.map(|l| l.index)),
    )?;
    gauge(
        "push_raft_committed_index",
        "Index of the last entry known committed (persisted by the log store).",
        index(crate::consensus::log_store::committed_index()),
    )?;
    gauge(
        "push_raft_is_leader",
        "1 when this node is the leader.",
        i64::from(m.state == openraft::ServerState::Leader),
    )?;
    gauge(
        "push_raft_snapshot_index",
        "Index covered by the latest snapshot.",
        index(m.snapshot.map(|l| l.index)),
    )?;

    let ready = IntGaugeVec::new(
        Opts::new("push_queue_ready", "Items ready to be taken."),
        &["queue"],
    )?;
    let leased = IntGaugeVec::new(
        Opts::new("push_queue_leased", "Items taken and not yet acked."),
        &["queue"],
    )?;
    let puts = IntCounterVec::new(
        Opts::new("push_queue_puts_total", "Items ever put (replicated)."),
        &["queue"],
    )?;
    let acks = IntCounterVec::new(
        Opts::new("push_queue_acks_total", "Items ever acked (replicated)."),
        &["queue"],
    )?;
    // One short read of the applied state per scrape.
    node.read(|s| {
        let now = s.queues.clock().max(crate::clock::now_ms());
        for (name, q) in s.queues.names() {
            ready
                .with_label_values(&[name])
                .set(q.ready_count(now) as i64);
            leased
                .with_label_values(&[name])
                .set(q.leased_count(now) as i64);
            puts.with_label_values(&[name]).inc_by(q.puts);
            acks.with_label_values(&[name]).inc_by(q.acks);
        }
    });
    registry.register(Box::new(ready))?;
    registry.register(Box::new(leased))?;
    registry.register(Box::new(puts))?;
    registry.register(Box::new(acks))?;

    let workers = node.workers.rows();
    let worker_rss = IntGaugeVec::new(
        Opts::new(
            "push_python_worker_resident_memory_bytes",
            "Resident memory of each Python worker process (0 while it restarts).",
        ),
        &["worker"],
    )?;
    let worker_busy = IntGaugeVec::new(
        Opts::new(
            "push_python_worker_busy",
            "Requests and evals in flight on each Python worker.",
        ),
        &["worker"],
    )?;
    for w in &workers {
        let label = format!("w{}", w.slot);
        worker_rss
            .with_label_values(&[&label])
            .set(w.rss_bytes as i64);
        worker_busy.with_label_values(&[&label]).set(w.busy as i64);
    }
    registry.register(Box::new(worker_rss))?;
    registry.register(Box::new(worker_busy))?;
    gauge(
        "push_python_workers_up",
        "Python worker processes up and serving.",
        workers.iter().filter(|w| w.up).count() as i64,
    )?;

    let p = crate::procstat::ProcessUsage::current();
    if p.rss_bytes > 0 {
        gauge(
            "push_process_resident_memory_bytes",
            "Resident memory of the node process.",
            p.rss_bytes as i64,
        )?;
        gauge(
            "push_process_threads",
            "Threads of the node process.",
            p.threads as i64,
        )?;
        let cpu = prometheus::Counter::new(
            "push_process_cpu_seconds_total",
            "User and system CPU time of the node process.",
        )?;
        cpu.inc_by(p.cpu_ms as f64 / 1000.0);
        registry.register(Box::new(cpu))?;
    }
    if p.fd_limit > 0 {
        let limit = i64::try_from(p.fd_limit).unwrap_or(i64::MAX);
        gauge(
            "push_process_max_fds",
            "Soft limit on open file descriptors.",
            limit,
        )?;
        gauge(
            "push_process_open_fds",
            "Open file descriptors.",
            p.fds_open as i64,
        )?;
    }
    Ok(registry)
}

/// The `/metrics` page: event counters plus levels read now.
pub fn render(node: &Node) -> Result<String, prometheus::Error> {
    let mut families = crate::metrics::gather();
    families.extend(scrape_levels(node)?.gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
