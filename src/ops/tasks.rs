//! Daemons, schedules and lambdas as clients see them: the rows of `push daemons`, the log
//! lines of `push tail`, and `push.run` on the nodes it names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use push_protocol::{
    DaemonRow, ErrorBody, ErrorCode, LogLine, NodeInfo, Op, Outcome, Reply, RunFunc, RunOn,
    UnitReport, Value, DEFAULT_APP,
};

use super::eval::runtime_error;
use super::fanout::fan_out;
use crate::model::State;
use crate::node::Node;

/// How long `Tail` waits for each node's lines.
const TAIL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a lambda may run on another node (the caller's own timeout is usually shorter).
const RUN_TIMEOUT: Duration = Duration::from_secs(3_600);

/// The rows of `push daemons`; an unplaced unit's row names the placement requirement that
/// failed, judged from the specs of the app's HEAD as this node loaded them.
pub async fn daemons(node: &Node) -> Vec<DaemonRow> {
    let unplaced: BTreeSet<String> = node.read(|s| {
        s.tasks
            .apps()
            .filter(|(_, t)| t.units.values().any(|p| p.nodes.is_empty()))
            .map(|(app, _)| app.clone())
            .collect()
    });
    let live = node.live_nodes();
    let mut reasons: BTreeMap<(String, String), String> = BTreeMap::new();
    for app in unplaced {
        let specs = match node.workers.head_tasks(app.clone()).await {
            Ok(Some(head)) => head.tasks,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(%app, "no task specs to explain placement: {e}");
                continue;
            }
        };
        node.read(|s| {
            let Some(tasks) = s.tasks.app(&app) else {
                return;
            };
            for (unit, _) in tasks.units.iter().filter(|(_, p)| p.nodes.is_empty()) {
                let spec = specs.iter().find(|t| {
                    t.name == *unit || crate::model::tasks::is_partition_of(unit, &t.name)
                });
                if let Some(spec) = spec {
                    reasons.insert((app.clone(), unit.clone()), spec.why_unplaced(&live));
                }
            }
        });
    }
    node.read(|s| daemon_rows(s, &reasons))
}

/// The rows of `push daemons`, from the placement and the nodes' reports; `reasons` says why
/// an unplaced unit (by app and unit) is unplaced.
pub fn daemon_rows(s: &State, reasons: &BTreeMap<(String, String), String>) -> Vec<DaemonRow> {
    let mut rows = Vec::new();
    for (app, tasks) in s.tasks.apps() {
        for (unit, placement) in &tasks.units {
            if placement.nodes.is_empty() {
                let why = reasons
                    .get(&(app.clone(), unit.clone()))
                    .map_or("unplaced: no live node matches", String::as_str);
                rows.push(row(app, unit, kind_of(unit), None, why, None));
            }
            for id in &placement.nodes {
                let report = s.nodes.unit(*id, app, unit);
                let kind = report.map_or_else(|| kind_of(unit), |r| r.kind.clone());
                rows.push(row(app, unit, kind, Some(*id), "starting", report));
            }
        }
        for name in &tasks.schedules {
            let firing = s.tasks.firing(app, name);
            let nodes = firing.map(|f| f.nodes.clone()).unwrap_or_default();
            if nodes.is_empty() {
                let waiting = "waiting for its first firing";
                rows.push(row(app, name, "schedule".into(), None, waiting, None));
            }
            for id in nodes {
                let report = s.nodes.unit(id, app, name);
                rows.push(DaemonRow {
                    // A schedule is not restarted; each firing is a new run.
                    restarts: 0,
                    ..row(app, name, "schedule".into(), Some(id), "fired", report)
                });
            }
        }
    }
    rows
}

/// One row: what the node reported about the unit, or `absent` when it reported nothing.
fn row(
    app: &str,
    unit: &str,
    kind: String,
    node: Option<u64>,
    absent: &str,
    report: Option<&UnitReport>,
) -> DaemonRow {
    DaemonRow {
        app: app.to_string(),
        unit: unit.to_string(),
        kind,
        node,
        state: report.map_or_else(|| absent.to_string(), |r| r.state.clone()),
        restarts: report.map_or(0, |r| r.restarts),
        runs: report.map_or(0, |r| r.runs),
        version: report.map(|r| r.version),
        error: report.and_then(|r| r.error.clone()),
    }
}

fn kind_of(unit: &str) -> String {
    if unit.ends_with(']') {
        "partition"
    } else {
        "daemon"
    }
    .into()
}

/// Whether `app` declares a daemon (or partition of one) or a schedule called `name`.
fn has(s: &State, app: &str, name: &str) -> bool {
    s.tasks.app(app).is_some_and(|t| {
        t.schedules.iter().any(|n| n == name)
            || t.units
                .keys()
                .any(|u| u == name || crate::model::tasks::is_partition_of(u, name))
    })
}

/// Log lines of daemon `name`: from this node, or gathered from every node that runs it.
pub async fn tail(
    node: &Node,
    app: Option<&str>,
    name: &str,
    after: &[(u64, u64)],
    here: bool,
) -> Outcome {
    // Without an app: the default app if it has `name`, else the first app that does.
    let app = match app {
        Some(a) => a.to_string(),
        None => node.read(|s| {
            if has(s, DEFAULT_APP, name) {
                DEFAULT_APP.to_string()
            } else {
                s.tasks
                    .apps()
                    .map(|(a, _)| a.clone())
                    .find(|a| has(s, a, name))
                    .unwrap_or_else(|| DEFAULT_APP.to_string())
            }
        }),
    };
    let since = |id: u64| after.iter().find(|(n, _)| *n == id).map_or(0, |(_, s)| *s);
    let local = || async {
        node.workers
            .lines(app.clone(), name.to_string(), since(node.id))
            .await
            .map(|lines| {
                Reply::Lines(
                    lines
                        .into_iter()
                        .map(|(seq, text)| LogLine {
                            node: node.id,
                            seq,
                            text,
                        })
                        .collect(),
                )
            })
            .map_err(runtime_error)
    };
    if here {
        return local().await;
    }
    if !node.read(|s| has(s, &app, name)) {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("no daemon or schedule called {name:?} runs in {app}; see `push daemons`"),
        ));
    }
    // Every member: a daemon that moved, or a schedule, left lines on several nodes.
    let targets: Vec<u64> = node.members().iter().map(|m| m.id).collect();
    let op = Op::Tail {
        app: Some(app.clone()),
        name: name.to_string(),
        after: after.to_vec(),
        here: true,
    };
    let mut lines = Vec::new();
    for (_, outcome) in fan_out(node, &targets, op, TAIL_TIMEOUT, local).await {
        if let Ok(Reply::Lines(mut l)) = outcome {
            lines.append(&mut l);
        }
    }
    Ok(Reply::Lines(lines))
}

/// The nodes `on` names among the live ones (`pick` chooses for `Any`).
fn targets(
    here: u64,
    on: &RunOn,
    live: &[NodeInfo],
    pick: impl FnOnce(usize) -> usize,
) -> Vec<u64> {
    match on {
        RunOn::Here => vec![here],
        RunOn::Node(id) => vec![*id],
        RunOn::All => live.iter().map(|n| n.id).collect(),
        RunOn::Tag(tag) => live
            .iter()
            .filter(|n| n.tags.contains(tag))
            .map(|n| n.id)
            .collect(),
        RunOn::Any if live.is_empty() => vec![here],
        RunOn::Any => vec![live[pick(live.len()) % live.len()].id],
    }
}

/// Runs a lambda where `on` says; results per node.
pub async fn run(node: &Node, func: &RunFunc, args: &[Value], on: &RunOn) -> Outcome {
    let live = node.live_nodes();
    let targets = targets(node.id, on, &live, |n| rand::random::<usize>() % n);
    if targets.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("no live node matches {on:?}; see `push registry` for ids and tags"),
        ));
    }
    let op = Op::Run {
        func: func.clone(),
        args: args.to_vec(),
        on: RunOn::Here,
    };
    let local = || async {
        let result = node
            .workers
            .run_lambda(func.clone(), args.to_vec())
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Invalid, e.to_string()));
        Ok(Reply::Ran(vec![(node.id, result)]))
    };
    let results = fan_out(node, &targets, op, RUN_TIMEOUT, local).await;
    let mut out = Vec::new();
    for (id, outcome) in results {
        match outcome {
            Ok(Reply::Ran(mut r)) if r.len() == 1 => out.push(r.remove(0)),
            Ok(other) => out.push((
                id,
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    format!("unexpected reply {other:?}"),
                )),
            )),
            Err(e) => out.push((id, Err(e))),
        }
    }
    Ok(Reply::Ran(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, tags: &[&str]) -> NodeInfo {
        NodeInfo {
            id,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..NodeInfo::default()
        }
    }

    #[test]
    fn run_targets_follow_the_request() {
        let live = [info(1, &["gpu"]), info(2, &[]), info(3, &["gpu"])];
        assert_eq!(targets(2, &RunOn::Here, &live, |_| 0), vec![2]);
        assert_eq!(targets(2, &RunOn::All, &live, |_| 0), vec![1, 2, 3]);
        assert_eq!(
            targets(2, &RunOn::Tag("gpu".into()), &live, |_| 0),
            vec![1, 3]
        );
        assert_eq!(targets(2, &RunOn::Any, &live, |_| 2), vec![3]);
        assert_eq!(targets(2, &RunOn::Any, &[], |_| 0), vec![2]);
        assert!(targets(2, &RunOn::Tag("tpu".into()), &live, |_| 0).is_empty());
    }

    #[test]
    fn unplaced_and_reported_units_make_rows() {
        assert_eq!(kind_of("worker"), "daemon");
        assert_eq!(kind_of("handler[3]"), "partition");
        let none = row(
            "main",
            "worker",
            kind_of("worker"),
            None,
            "unplaced: no live node matches",
            None,
        );
        assert_eq!(none.state, "unplaced: no live node matches");
        assert_eq!((none.restarts, none.runs, none.version), (0, 0, None));
        let report = UnitReport {
            app: "main".into(),
            unit: "worker".into(),
            kind: "daemon".into(),
            state: "running".into(),
            restarts: 2,
            runs: 5,
            version: 4,
            error: None,
            since_ms: 0,
        };
        let placed = row(
            "main",
            "worker",
            "daemon".into(),
            Some(1),
            "starting",
            Some(&report),
        );
        assert_eq!(placed.state, "running");
        assert_eq!(
            (placed.restarts, placed.runs, placed.version),
            (2, 5, Some(4))
        );
    }
}
