//! Tasks across the cluster: heartbeats into the node registry, the leader's placement of
//! daemon units and firing of schedules, and each node carrying out its share.
//!
//! One loop per node, woken by applied commands and a short tick:
//! - every node sends a heartbeat (capabilities + what its units are doing) each second;
//! - every node reconciles its Python units with the placement in the replicated state and
//!   runs schedule firings addressed to it;
//! - the leader places units on live nodes (registry liveness) and proposes firings when a
//!   schedule is due. Placement and firings go through Raft, so a new leader continues
//!   exactly where the old one stopped.

pub mod placement;
pub mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use push_protocol::{NodeInfo, NodeReport, Op};

use crate::clock::now_ms;
use crate::model::spec::{HeadTasks, TaskSpec};
use crate::model::CommandOp;
use crate::node::Node;
use crate::shutdown::Shutdown;

/// How often a node reports to the registry.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The loop's tick when nothing is applied.
const TICK: Duration = Duration::from_millis(250);
/// A new leader waits this long before moving units off nodes it has not heard from.
const LEADER_GRACE: Duration = Duration::from_secs(3);

/// This machine's capabilities, with the configured tags and GPU override.
pub fn capabilities(tags: &[String], gpu: Option<bool>) -> (u32, u64, bool, Vec<String>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    let gpu = gpu.unwrap_or_else(|| std::path::Path::new("/dev/nvidia0").exists());
    (cores, memory_mb, gpu, tags.to_vec())
}

/// Per app: the version and (unit, generation) list last reconciled, and when.
type Reconciled = (u64, Vec<(String, u64)>, Instant);

/// Runs this node's share of the task system until shutdown, then stops its units.
pub async fn run(node: Arc<Node>, info: NodeInfo, mut shutdown: Shutdown) {
    let mut applied = node.state.subscribe();
    let mut last_beat = Instant::now() - HEARTBEAT;
    let mut leader_since: Option<Instant> = None;
    // Firings already seen: only those applied after this node started are run here.
    let mut seen: HashMap<(String, String), u64> =
        node.read(|s| s.tasks.firings().map(|(k, f)| (k.clone(), f.seq)).collect());
    let mut reconciled: BTreeMap<String, Reconciled> = BTreeMap::new();
    let mut specs: BTreeMap<String, HeadTasks> = BTreeMap::new();
    loop {
        if last_beat.elapsed() >= HEARTBEAT {
            last_beat = Instant::now();
            let node2 = node.clone();
            let runtime = node.workers.clone();
            let info = info.clone();
            tokio::spawn(async move {
                let units = runtime.reports().await.unwrap_or_default();
                crate::metrics::metrics().units(&units);
                let op = Op::Heartbeat(Box::new(NodeReport { info, units }));
                if let Err(e) = crate::ops::handle(&node2, op).await {
                    tracing::debug!("heartbeat not recorded: {}", e.message);
                }
            });
        }
        refresh_specs(&node, &mut specs).await;
        reconcile(&node, &specs, &mut reconciled).await;
        run_firings(&node, &mut seen).await;
        if node.is_leader() {
            let since = *leader_since.get_or_insert_with(Instant::now);
            lead(&node, &specs, since.elapsed() >= LEADER_GRACE).await;
        } else {
            leader_since = None;
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            changed = applied.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    node.workers.stop_tasks().await;
}

/// Reads the task specs of every app whose HEAD this node has loaded.
async fn refresh_specs(node: &Node, specs: &mut BTreeMap<String, HeadTasks>) {
    let heads = node.read(|s| s.code.heads());
    let serving = node.workers.apps();
    for (app, head) in heads {
        let loaded = serving.get(&app).and_then(|a| a.serving);
        if loaded != Some(head) || specs.get(&app).is_some_and(|h| h.version == head) {
            continue;
        }
        match node.workers.head_tasks(app.clone()).await {
            Ok(Some(tasks)) => {
                specs.insert(app, tasks);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%app, "cannot read task specs: {e}"),
        }
    }
}

/// Starts and stops this node's units to match the placement (again every few seconds, so a
/// unit whose start failed is retried).
async fn reconcile(
    node: &Node,
    specs: &BTreeMap<String, HeadTasks>,
    done: &mut BTreeMap<String, Reconciled>,
) {
    for (app, head) in specs {
        let wanted: Vec<(String, u64)> = node.read(|s| {
            s.tasks
                .app(app)
                .map(|t| {
                    t.units
                        .iter()
                        .filter(|(_, p)| p.nodes.contains(&node.id))
                        .map(|(u, p)| (u.clone(), p.generation))
                        .collect()
                })
                .unwrap_or_default()
        });
        let fresh = done.get(app).is_some_and(|(v, w, at)| {
            *v == head.version && *w == wanted && at.elapsed() < Duration::from_secs(5)
        });
        if fresh {
            continue;
        }
        match node.workers.reconcile(app.clone(), wanted.clone()).await {
            Ok(()) => {
                done.insert(app.clone(), (head.version, wanted, Instant::now()));
            }
            Err(e) => tracing::warn!(%app, "cannot start or stop daemons: {e}"),
        }
    }
}

/// Runs schedule firings addressed to this node.
async fn run_firings(node: &Node, seen: &mut HashMap<(String, String), u64>) {
    let firings: Vec<((String, String), u64, bool)> = node.read(|s| {
        s.tasks
            .firings()
            .map(|(k, f)| (k.clone(), f.seq, f.nodes.contains(&node.id)))
            .collect()
    });
    for (key, seq, mine) in firings {
        if seen.get(&key).is_some_and(|s| *s >= seq) {
            continue;
        }
        seen.insert(key.clone(), seq);
        if mine {
            let (app, name) = key;
            if let Err(e) = node.workers.fire(app.clone(), name.clone()).await {
                tracing::warn!(%app, %name, "schedule firing failed to start: {e}");
            }
        }
    }
}

/// The leader's duties: keep placement current and fire due schedules.
async fn lead(node: &Node, specs: &BTreeMap<String, HeadTasks>, may_move: bool) {
    let live = node.live_nodes();
    if live.is_empty() {
        return;
    }
    let now = now_ms();
    for (app, head) in specs {
        let (current, state_head) = node.read(|s| {
            (
                s.tasks.app(app).cloned(),
                s.code.app(app).and_then(|a| a.head),
            )
        });
        if state_head != Some(head.version) {
            continue;
        }
        // Until the grace period passes, nodes we have not heard from keep their units.
        let mut candidates = live.clone();
        if !may_move {
            if let Some(c) = &current {
                let extra: Vec<u64> = c.units.values().flat_map(|p| p.nodes.clone()).collect();
                node.read(|s| {
                    for id in extra {
                        if !candidates.iter().any(|n| n.id == id) {
                            if let Some(r) = s.nodes.get(id) {
                                candidates.push(r.info.clone());
                            }
                        }
                    }
                });
            }
        }
        let desired = placement::place(&head.tasks, &candidates, current.as_ref());
        let schedules: Vec<String> = head
            .tasks
            .iter()
            .filter(|t| t.kind == "schedule")
            .map(|t| t.name.clone())
            .collect();
        let same = current.as_ref().is_some_and(|c| {
            c.version == head.version
                && c.schedules == schedules
                && c.units.len() == desired.len()
                && desired
                    .iter()
                    .all(|(u, n)| c.units.get(u).is_some_and(|p| &p.nodes == n))
        });
        if !same {
            let command = CommandOp::Assign {
                app: app.clone(),
                version: head.version,
                units: desired,
                schedules,
            };
            if let Err(e) = node.propose(command).await {
                tracing::debug!(%app, "placement not recorded: {}", e.message);
            }
        }
        for spec in head.tasks.iter().filter(|t| t.kind == "schedule") {
            fire_if_due(node, app, spec, &live, now).await;
        }
    }
}

async fn fire_if_due(node: &Node, app: &str, spec: &TaskSpec, live: &[NodeInfo], now: u64) {
    let last = node.read(|s| s.tasks.firing(app, &spec.name).cloned());
    let due = match (&spec.every_ms, &spec.cron) {
        (Some(every), _) => Some(schedule::next_every(
            *every,
            last.as_ref().map(|f| f.due_ms),
            now,
        )),
        (None, Some(cron)) => match schedule::Cron::parse(cron) {
            Ok(c) => c.next_due(last.as_ref().map(|f| f.due_ms), now),
            Err(e) => {
                tracing::warn!(%app, name = %spec.name, "bad cron spec: {e}");
                None
            }
        },
        (None, None) => None,
    };
    let Some(due) = due else { return };
    if now < due {
        return;
    }
    let nodes = placement::fire_nodes(spec, live, last.as_ref().map_or(0, |f| f.seq));
    if nodes.is_empty() {
        return;
    }
    let command = CommandOp::Fire {
        app: app.to_string(),
        name: spec.name.clone(),
        due_ms: due,
        nodes,
    };
    if let Err(e) = node.propose(command).await {
        tracing::debug!(%app, name = %spec.name, "firing not recorded: {}", e.message);
    }
}
