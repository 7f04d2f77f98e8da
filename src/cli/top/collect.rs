//! Data collection for `push top`: asks every node for its status and one reachable node for
//! the cluster-wide tables, and turns counters into rates. Knows nothing about the terminal.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use push_protocol::{
    AuditEntry, Client, DaemonRow, ErrorCode, NodeEntry, NodeStatus, Op, QueueStat, Reply,
    VersionInfo,
};
use tokio::task::JoinSet;

/// How long a node has to answer a status request before it is shown as DOWN.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long the cluster-wide requests (queues, daemons, versions, audit) may take.
const CLUSTER_TIMEOUT: Duration = Duration::from_millis(1500);
/// How many samples of each queue's rates the sparklines keep.
pub const HISTORY: usize = 120;
/// How many audit entries the dashboard fetches.
const AUDIT_LIMIT: usize = 50;

/// One node as the dashboard shows it.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub id: u64,
    pub addr: String,
    /// Its answer to `Status`, or why there was none (the node is DOWN).
    pub status: Result<NodeStatus, String>,
    /// Entries it is behind the leader, when both are known.
    pub lag: Option<u64>,
    /// CPU use since the previous refresh, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// The same for each of its Python workers, in the order of its status' workers.
    pub worker_cpu: Vec<Option<f64>>,
    /// The registry's view: false when the node stopped heartbeating.
    pub registry_alive: Option<bool>,
}

/// One queue with rates from the previous refresh.
#[derive(Clone, Debug)]
pub struct QueueRow {
    pub stat: QueueStat,
    pub put_rate: f64,
    pub ack_rate: f64,
    /// Recent put rates (per second, rounded), oldest first.
    pub put_history: Vec<u64>,
    pub ack_history: Vec<u64>,
}

/// An app's history as the deploys pane shows it.
#[derive(Clone, Debug)]
pub struct AppVersions {
    pub app: String,
    pub head: Option<u64>,
    /// Newest first.
    pub versions: Vec<VersionInfo>,
}

/// Everything one refresh learned. Rendering is a pure function of this (plus UI state).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub nodes: Vec<NodeRow>,
    pub leader: Option<u64>,
    pub term: u64,
    pub queues: Result<Vec<QueueRow>, String>,
    pub daemons: Result<Vec<DaemonRow>, String>,
    pub versions: Result<Vec<AppVersions>, String>,
    pub audit: Result<Vec<AuditEntry>, String>,
    /// Set when no node answered at all.
    pub error: Option<String>,
}

/// Keeps connections, known members and the previous counters between refreshes.
pub struct Collector {
    token: String,
    /// Addresses given on the command line (or by `push up`): always tried.
    seeds: Vec<String>,
    /// Members learned from status replies and the registry: id -> address.
    known: BTreeMap<u64, String>,
    clients: HashMap<String, Arc<Client>>,
    cpu: HashMap<u64, (u64, Instant)>,
    /// CPU samples of workers by (node, pid): a restarted worker starts afresh.
    worker_cpu: HashMap<(u64, u32), (u64, Instant)>,
    queues: HashMap<String, QueueSample>,
    /// The newest audit entries seen, newest last, and the highest seq among them.
    audit: VecDeque<AuditEntry>,
    audit_after: u64,
}

struct QueueSample {
    puts: u64,
    acks: u64,
    at: Instant,
    put_history: VecDeque<u64>,
    ack_history: VecDeque<u64>,
}

type StatusResults = Vec<(String, Result<NodeStatus, String>)>;

impl Collector {
    pub fn new(seeds: Vec<String>, token: String) -> Collector {
        Collector {
            token,
            seeds,
            known: BTreeMap::new(),
            clients: HashMap::new(),
            cpu: HashMap::new(),
            worker_cpu: HashMap::new(),
            queues: HashMap::new(),
            audit: VecDeque::new(),
            audit_after: 0,
        }
    }

    /// A connection to `addr`, reusing the last one while it is open.
    async fn client(&mut self, addr: &str) -> Result<Arc<Client>, String> {
        if let Some(c) = self.clients.get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            self.clients.remove(addr);
        }
        connect(addr, &self.token).await.inspect(|c| {
            self.clients.insert(addr.to_string(), c.clone());
        })
    }

    /// Asks every known address for its status at once, each within [`NODE_TIMEOUT`].
    async fn statuses(&mut self, addrs: &[String]) -> StatusResults {
        let mut set = JoinSet::new();
        for (i, addr) in addrs.iter().enumerate() {
            let cached = self.clients.get(addr).filter(|c| !c.is_closed()).cloned();
            let (addr, token) = (addr.clone(), self.token.clone());
            set.spawn(async move {
                let asked = async {
                    let client = match cached {
                        Some(c) => c,
                        None => connect(&addr, &token).await?,
                    };
                    match client.call(Op::Status).await {
                        Ok(Reply::Status(s)) => Ok((client, *s)),
                        Ok(other) => Err(format!("unexpected reply {other:?}")),
                        Err(e) => Err(e.to_string()),
                    }
                };
                let result = tokio::time::timeout(NODE_TIMEOUT, asked)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {NODE_TIMEOUT:?}")));
                (i, addr, result)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((i, addr, result)) = joined else {
                continue;
            };
            let result = match result {
                Ok((client, status)) => {
                    self.clients.insert(addr.clone(), client);
                    Ok(status)
                }
                Err(e) => {
                    // A hung or dead connection is not reused.
                    self.clients.remove(&addr);
                    Err(e)
                }
            };
            results.push((i, addr, result));
        }
        results.sort_by_key(|(i, _, _)| *i);
        results.into_iter().map(|(_, a, r)| (a, r)).collect()
    }

    /// Seeds and known members not among `asked`, in a stable order.
    fn unasked(&self, asked: &[(String, Result<NodeStatus, String>)]) -> Vec<String> {
        let mut addrs: Vec<String> = Vec::new();
        for addr in self.seeds.iter().chain(self.known.values()) {
            if !addrs.contains(addr) && !asked.iter().any(|(a, _)| a == addr) {
                addrs.push(addr.clone());
            }
        }
        addrs
    }

    fn learn_members(&mut self, statuses: &StatusResults) {
        for s in statuses.iter().filter_map(|(_, s)| s.as_ref().ok()) {
            for m in &s.members {
                self.known.insert(m.id, m.addr.clone());
            }
        }
    }

    /// Sends a cluster-wide request to the leader if it answered, else to any node that did.
    async fn ask(&mut self, order: &[String], op: Op) -> Result<Reply, String> {
        let mut last = "no node answered".to_string();
        for addr in order {
            let client = match self.client(addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match tokio::time::timeout(CLUSTER_TIMEOUT, client.call(op.clone())).await {
                Ok(Ok(reply)) => return Ok(reply),
                // The node answered with an error: that is the answer (another node would say
                // the same), e.g. an op it does not know.
                Ok(Err(push_protocol::ClientError::Server(body))) => {
                    return Err(describe(body.code, &body.message))
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("{addr}: no answer within {CLUSTER_TIMEOUT:?}"),
            }
            self.clients.remove(addr);
        }
        Err(last)
    }

    /// One refresh: every node's status, then queues, daemons, versions and audit.
    pub async fn collect(&mut self) -> Snapshot {
        let now = Instant::now();
        let mut statuses = self.statuses(&self.unasked(&[])).await;
        self.learn_members(&statuses);
        // Members just learned (a first refresh from one seed) are asked in the same refresh.
        let more = self.unasked(&statuses);
        if !more.is_empty() {
            let extra = self.statuses(&more).await;
            statuses.extend(extra);
        }
        let up: Vec<&NodeStatus> = statuses
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok())
            .collect();
        for s in &up {
            for m in &s.members {
                self.known.insert(m.id, m.addr.clone());
            }
        }
        // The leader by the highest term any node reports.
        let term = up.iter().map(|s| s.term).max().unwrap_or(0);
        let leader_status = up
            .iter()
            .find(|s| s.role == "leader" && s.term == term)
            .copied();
        let leader = leader_status
            .map(|s| s.id)
            .or_else(|| up.iter().filter(|s| s.term == term).find_map(|s| s.leader));
        // Ask the leader first for cluster-wide tables, then any node that answered.
        let mut order: Vec<String> = Vec::new();
        if let Some(l) = leader_status {
            order.push(l.addr.clone());
        }
        for (addr, s) in &statuses {
            if s.is_ok() && !order.contains(addr) {
                order.push(addr.clone());
            }
        }
        let by_addr: HashMap<String, NodeStatus> = statuses
            .iter()
            .filter_map(|(a, s)| s.as_ref().ok().map(|s| (a.clone(), s.clone())))
            .collect();
        let errors: HashMap<String, String> = statuses
            .iter()
            .filter_map(|(a, s)| s.as_ref().err().map(|e| (a.clone(), e.clone())))
            .collect();
        let leader_status = leader_status.cloned();
        drop(up);

        let registry: Vec<NodeEntry> = match self.ask(&order, Op::Nodes).await {
            Ok(Reply::Nodes(entries)) => entries,
            _ => Vec::new(),
        };
        for e in &registry {
            self.known
                .entry(e.info.id)
                .or_insert_with(|| e.info.addr.clone());
        }
        // Registered nodes that are not members (removed, or not joined yet) are asked too.
        let more = self.unasked(&statuses);
        let (mut by_addr, mut errors) = (by_addr, errors);
        for (addr, s) in self.statuses(&more).await {
            match s {
                Ok(s) => {
                    by_addr.insert(addr, s);
                }
                Err(e) => {
                    errors.insert(addr, e);
                }
            }
        }

        let mut nodes = Vec::new();
        for (id, addr) in self.known.clone() {
            let status = match by_addr.get(&addr) {
                Some(s) if s.id == id => Ok(s.clone()),
                Some(s) => Err(format!("{addr} answers as node {}", s.id)),
                None => Err(errors
                    .get(&addr)
                    .cloned()
                    .unwrap_or_else(|| "not asked yet".into())),
            };
            let cpu_percent = status.as_ref().ok().and_then(|s| self.cpu_percent(s, now));
            let worker_cpu = status
                .as_ref()
                .map_or_else(|_| Vec::new(), |s| self.worker_cpu(s, now));
            let lag = status
                .as_ref()
                .ok()
                .and_then(|s| lag(s, leader_status.as_ref()));
            let registry_alive = registry.iter().find(|e| e.info.id == id).map(|e| e.alive);
            nodes.push(NodeRow {
                id,
                addr,
                status,
                lag,
                cpu_percent,
                worker_cpu,
                registry_alive,
            });
        }
        // Seeds that answered as nobody we know yet (a fresh node) or never answered.
        for (addr, s) in &statuses {
            if !self.known.values().any(|a| a == addr) {
                nodes.push(NodeRow {
                    id: s.as_ref().map_or(0, |s| s.id),
                    addr: addr.clone(),
                    status: s.clone(),
                    lag: None,
                    cpu_percent: None,
                    worker_cpu: Vec::new(),
                    registry_alive: None,
                });
            }
        }

        let error = if order.is_empty() {
            Some(
                statuses
                    .iter()
                    .map(|(a, s)| match s {
                        Err(e) => format!("{a}: {e}"),
                        Ok(_) => a.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
            .map(|e| format!("no node answers ({e}); retrying every second"))
        } else {
            None
        };

        let queues = match self.ask(&order, Op::QueueStats).await {
            Ok(Reply::QueueStats(stats)) => Ok(self.queue_rows(stats, now)),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e),
        };
        let daemons = match self.ask(&order, Op::Daemons).await {
            Ok(Reply::Daemons(rows)) => Ok(rows),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e),
        };
        let apps: Vec<String> = {
            let mut apps: Vec<String> = by_addr
                .values()
                .flat_map(|s| s.heads.iter().map(|(a, _)| a.clone()))
                .collect();
            apps.sort();
            apps.dedup();
            apps
        };
        let mut versions = Ok(Vec::new());
        for app in apps {
            match self.ask(&order, Op::Versions { app: app.clone() }).await {
                Ok(Reply::Versions { head, versions: v }) => {
                    if let Ok(list) = versions.as_mut() {
                        list.push(AppVersions {
                            app,
                            head,
                            versions: v.into_iter().rev().collect(),
                        });
                    }
                }
                Ok(other) => versions = Err(format!("unexpected reply {other:?}")),
                Err(e) => versions = Err(e),
            }
        }
        let audit = self.audit(&order).await;

        Snapshot {
            nodes,
            leader,
            term,
            queues,
            daemons,
            versions,
            audit,
            error,
        }
    }

    /// The newest audit entries, newest first: each refresh asks only for entries after the
    /// last one seen (a few pages at most, so a long log is caught up over a few refreshes).
    async fn audit(&mut self, order: &[String]) -> Result<Vec<AuditEntry>, String> {
        const PAGE: usize = 500;
        for _ in 0..4 {
            let op = Op::Audit {
                after: self.audit_after,
                limit: PAGE,
                action: None,
            };
            let entries = match self.ask(order, op).await? {
                Reply::Audit(entries) => entries,
                other => return Err(format!("unexpected reply {other:?}")),
            };
            let full = entries.len() == PAGE;
            for e in entries {
                self.audit_after = self.audit_after.max(e.seq);
                if self.audit.len() == AUDIT_LIMIT {
                    self.audit.pop_front();
                }
                self.audit.push_back(e);
            }
            if !full {
                break;
            }
        }
        Ok(self.audit.iter().rev().cloned().collect())
    }

    /// CPU percent of one core since this node's previous sample (None on the first one, or
    /// after the node restarted and its counter went backwards).
    fn cpu_percent(&mut self, s: &NodeStatus, now: Instant) -> Option<f64> {
        let previous = self.cpu.insert(s.id, (s.cpu_ms, now));
        percent(previous, s.cpu_ms, now)
    }

    /// CPU percent of each of the node's workers since the previous sample of the same
    /// process; samples of processes gone are dropped.
    pub(super) fn worker_cpu(&mut self, s: &NodeStatus, now: Instant) -> Vec<Option<f64>> {
        self.worker_cpu
            .retain(|(node, pid), _| *node != s.id || s.workers.iter().any(|w| w.pid == *pid));
        s.workers
            .iter()
            .map(|w| {
                if !w.up {
                    return None;
                }
                let previous = self.worker_cpu.insert((s.id, w.pid), (w.cpu_ms, now));
                percent(previous, w.cpu_ms, now)
            })
            .collect()
    }

    fn queue_rows(&mut self, stats: Vec<QueueStat>, now: Instant) -> Vec<QueueRow> {
        let mut rows = Vec::new();
        for stat in stats {
            let sample = self
                .queues
                .entry(stat.name.clone())
                .or_insert_with(|| QueueSample {
                    puts: stat.puts,
                    acks: stat.acks,
                    at: now,
                    put_history: VecDeque::new(),
                    ack_history: VecDeque::new(),
                });
            let secs = now.duration_since(sample.at).as_secs_f64();
            let (put_rate, ack_rate) = if secs > 0.0 {
                (
                    stat.puts.saturating_sub(sample.puts) as f64 / secs,
                    stat.acks.saturating_sub(sample.acks) as f64 / secs,
                )
            } else {
                (0.0, 0.0)
            };
            if secs > 0.0 {
                push_bounded(&mut sample.put_history, put_rate.round() as u64);
                push_bounded(&mut sample.ack_history, ack_rate.round() as u64);
            }
            sample.puts = stat.puts;
            sample.acks = stat.acks;
            sample.at = now;
            rows.push(QueueRow {
                put_history: sample.put_history.iter().copied().collect(),
                ack_history: sample.ack_history.iter().copied().collect(),
                stat,
                put_rate,
                ack_rate,
            });
        }
        rows
    }
}

fn push_bounded(history: &mut VecDeque<u64>, value: u64) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(value);
}

async fn connect(addr: &str, token: &str) -> Result<Arc<Client>, String> {
    match tokio::time::timeout(NODE_TIMEOUT, Client::connect(addr, token)).await {
        Ok(Ok(c)) => Ok(Arc::new(c)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {NODE_TIMEOUT:?}")),
    }
}

/// An error reply in words; an op the node does not know means an older node.
fn describe(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::UnknownOp => format!("{message} (this node's version does not have it)"),
        _ => message.to_string(),
    }
}

/// How far `s` is behind the leader: the leader's last log index minus what `s` matched (on
/// the leader) or applied; without a leader, its own committed minus applied.
pub fn lag(s: &NodeStatus, leader: Option<&NodeStatus>) -> Option<u64> {
    if let Some(l) = leader {
        let last = l.last_log_index.unwrap_or(0);
        if l.id == s.id {
            return Some(last.saturating_sub(s.applied_index.unwrap_or(0)));
        }
        if let Some((_, matched)) = l.matched.iter().find(|(id, _)| *id == s.id) {
            return Some(last.saturating_sub(matched.unwrap_or(0)));
        }
        return Some(last.saturating_sub(s.applied_index.unwrap_or(0)));
    }
    match (s.committed_index, s.applied_index) {
        (Some(c), a) => Some(c.saturating_sub(a.unwrap_or(0))),
        _ => None,
    }
}

/// CPU percent of one core between `previous` (CPU ms, when) and `cpu_ms` now; None on a
/// first sample or a counter that went backwards.
fn percent(previous: Option<(u64, Instant)>, cpu_ms: u64, now: Instant) -> Option<f64> {
    let (before, at) = previous?;
    let wall = now.duration_since(at).as_secs_f64() * 1000.0;
    if cpu_ms < before || wall <= 0.0 {
        return None;
    }
    Some((cpu_ms - before) as f64 / wall * 100.0)
}
