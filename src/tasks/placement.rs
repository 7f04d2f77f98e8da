//! Placement: which live nodes run each daemon unit of an app. A pure function of the specs,
//! the live nodes and the current placement, so it is tested without a cluster.
//!
//! Rules: a unit stays where it is while its node is alive and still qualifies (no needless
//! moves); new or orphaned units go to the qualifying node with the fewest units, lowest id
//! first. `on="all"` takes every qualifying node; `on=N` only node N (nothing while N is down).

use std::collections::BTreeMap;

use push_protocol::NodeInfo;

use crate::model::spec::{TaskSpec, Where};
use crate::model::tasks::AppTasks;

/// Whether `node` satisfies `place`.
pub fn qualifies(node: &NodeInfo, place: &Where) -> bool {
    place.unmet(node).is_empty()
}

/// Desired placement (unit -> nodes) of an app's daemons and partition handlers.
pub fn place(
    specs: &[TaskSpec],
    live: &[NodeInfo],
    current: Option<&AppTasks>,
) -> BTreeMap<String, Vec<u64>> {
    let mut load: BTreeMap<u64, usize> = live.iter().map(|n| (n.id, 0)).collect();
    let mut out = BTreeMap::new();
    let units: Vec<(String, &TaskSpec, usize)> = specs
        .iter()
        .flat_map(|spec| match spec.kind.as_str() {
            "daemon" => vec![(spec.name.clone(), spec, spec.replicas.max(1) as usize)],
            "partition" => (0..spec.partitions.unwrap_or(1).max(1))
                .map(|i| (format!("{}[{i}]", spec.name), spec, 1))
                .collect(),
            _ => vec![],
        })
        .collect();
    // Units that keep their nodes count first, so newcomers see the real load.
    let mut kept: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (unit, spec, want) in &units {
        let eligible: Vec<&NodeInfo> = live.iter().filter(|n| qualifies(n, &spec.place)).collect();
        let previous = current
            .and_then(|c| c.units.get(unit))
            .map(|p| p.nodes.clone())
            .unwrap_or_default();
        let keep: Vec<u64> = match spec.on.as_str() {
            Some("all") => vec![],
            _ => previous
                .into_iter()
                .filter(|id| eligible.iter().any(|n| n.id == *id))
                .take(*want)
                .collect(),
        };
        for id in &keep {
            *load.entry(*id).or_default() += 1;
        }
        kept.insert(unit.clone(), keep);
    }
    for (unit, spec, want) in &units {
        let eligible: Vec<&NodeInfo> = live.iter().filter(|n| qualifies(n, &spec.place)).collect();
        let mut nodes = kept.remove(unit).unwrap_or_default();
        if let Some(id) = spec.on.as_u64() {
            nodes = eligible
                .iter()
                .filter(|n| n.id == id)
                .map(|n| n.id)
                .collect();
        } else if spec.on.as_str() == Some("all") {
            nodes = eligible.iter().map(|n| n.id).collect();
        } else {
            while nodes.len() < *want {
                let pick = eligible
                    .iter()
                    .filter(|n| !nodes.contains(&n.id))
                    .min_by_key(|n| (load.get(&n.id).copied().unwrap_or(0), n.id));
                match pick {
                    Some(n) => {
                        nodes.push(n.id);
                        *load.entry(n.id).or_default() += 1;
                    }
                    None => break,
                }
            }
        }
        nodes.sort_unstable();
        out.insert(unit.clone(), nodes);
    }
    out
}

/// The nodes a schedule's firing runs on: all qualifying for `on="all"`, node N for `on=N`,
/// else one of them, rotating with the firing's sequence number.
pub fn fire_nodes(spec: &TaskSpec, live: &[NodeInfo], seq: u64) -> Vec<u64> {
    let eligible: Vec<u64> = live
        .iter()
        .filter(|n| qualifies(n, &spec.place))
        .map(|n| n.id)
        .collect();
    if spec.on.as_str() == Some("all") {
        return eligible;
    }
    if let Some(id) = spec.on.as_u64() {
        return eligible.into_iter().filter(|n| *n == id).collect();
    }
    if eligible.is_empty() {
        return vec![];
    }
    vec![eligible[(seq as usize) % eligible.len()]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tasks::Placement;

    fn node(id: u64, tags: &[&str]) -> NodeInfo {
        NodeInfo {
            id,
            cores: 2,
            memory_mb: 1024,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..NodeInfo::default()
        }
    }

    fn spec(kind: &str, name: &str, on: serde_json::Value, replicas: u32) -> TaskSpec {
        TaskSpec {
            kind: kind.into(),
            name: name.into(),
            on,
            replicas,
            place: Where::default(),
            every_ms: None,
            cron: None,
            series: None,
            partitions: Some(4),
            hash: "h".into(),
        }
    }

    #[test]
    fn spreads_keeps_and_moves() {
        let live = vec![node(1, &[]), node(2, &["gpu"]), node(3, &[])];
        let mut gpu = spec("daemon", "trainer", "any".into(), 1);
        gpu.place.tags = vec!["gpu".into()];
        let specs = vec![
            spec("daemon", "a", "any".into(), 1),
            spec("daemon", "b", "any".into(), 2),
            spec("daemon", "everywhere", "all".into(), 1),
            spec("daemon", "pinned", serde_json::json!(3), 1),
            gpu,
            spec("partition", "h", "any".into(), 1),
        ];
        let first = place(&specs, &live, None);
        assert_eq!(first["b"].len(), 2);
        assert_eq!(first["everywhere"], vec![1, 2, 3]);
        assert_eq!(first["pinned"], vec![3]);
        assert_eq!(first["trainer"], vec![2]);
        assert_eq!(
            (0..4)
                .filter(|i| first.contains_key(&format!("h[{i}]")))
                .count(),
            4
        );
        // Stable: placing again with the same nodes changes nothing.
        let current = AppTasks {
            version: 1,
            units: first
                .iter()
                .map(|(u, n)| {
                    (
                        u.clone(),
                        Placement {
                            nodes: n.clone(),
                            generation: 0,
                        },
                    )
                })
                .collect(),
            schedules: vec![],
        };
        assert_eq!(place(&specs, &live, Some(&current)), first);
        // Node 3 dies: its units move, the others stay; pinned waits; gpu stays on 2.
        let survivors = vec![node(1, &[]), node(2, &["gpu"])];
        let moved = place(&specs, &survivors, Some(&current));
        assert_eq!(moved["pinned"], Vec::<u64>::new());
        assert_eq!(moved["everywhere"], vec![1, 2]);
        assert!(moved["a"].iter().all(|n| *n != 3) && moved["a"].len() == 1);
        for (unit, nodes) in &first {
            if !nodes.contains(&3) && unit != "everywhere" {
                assert_eq!(&moved[unit], nodes, "{unit} moved needlessly");
            }
        }
        // No gpu node left: the trainer waits.
        assert!(place(&specs, &[node(1, &[])], Some(&current))["trainer"].is_empty());
    }

    #[test]
    fn schedules_rotate() {
        let live = vec![node(1, &[]), node(2, &[])];
        let s = spec("schedule", "tick", "any".into(), 1);
        assert_eq!(fire_nodes(&s, &live, 0), vec![1]);
        assert_eq!(fire_nodes(&s, &live, 1), vec![2]);
        let all = spec("schedule", "tick", "all".into(), 1);
        assert_eq!(fire_nodes(&all, &live, 7), vec![1, 2]);
    }
}
