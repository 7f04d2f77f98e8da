//! The node registry: what each node offers (cores, memory, GPU, tags) and what it last
//! reported running, refreshed by its heartbeats.
//!
//! `last_seen_ms` is the heartbeat command's time, stamped by the leader that proposed it, so
//! liveness is judged against one clock.

use std::collections::BTreeMap;

use push_protocol::{NodeInfo, NodeReport, UnitReport};
use serde::{Deserialize, Serialize};

/// How long after its last heartbeat a node counts as down.
pub const DEAD_AFTER_MS: u64 = 4_000;

/// One registered node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registered {
    pub info: NodeInfo,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub units: Vec<UnitReport>,
}

impl Registered {
    /// Whether this node reported within [`DEAD_AFTER_MS`] of `now_ms`: the one liveness rule.
    pub fn alive(&self, now_ms: u64) -> bool {
        self.last_seen_ms + DEAD_AFTER_MS >= now_ms
    }
}

/// Every node that has ever reported.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    nodes: BTreeMap<u64, Registered>,
}

impl Registry {
    /// Records a heartbeat.
    pub fn beat(&mut self, report: &NodeReport, now_ms: u64) {
        let entry = self
            .nodes
            .entry(report.info.id)
            .or_insert_with(|| Registered {
                first_seen_ms: now_ms,
                ..Registered::default()
            });
        entry.info = report.info.clone();
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        entry.units = report.units.clone();
    }

    pub fn get(&self, id: u64) -> Option<&Registered> {
        self.nodes.get(&id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Registered> {
        self.nodes.values()
    }

    /// Whether node `id` has reported within [`DEAD_AFTER_MS`] of `now_ms`.
    pub fn alive(&self, id: u64, now_ms: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.alive(now_ms))
    }

    /// The nodes alive at `now_ms` (see [`Registry::alive`]).
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &Registered> {
        self.nodes.values().filter(move |n| n.alive(now_ms))
    }

    /// What node `id` reported about unit `unit` of `app`.
    pub fn unit(&self, id: u64, app: &str, unit: &str) -> Option<&UnitReport> {
        self.nodes
            .get(&id)?
            .units
            .iter()
            .find(|u| u.app == app && u.unit == unit)
    }

    /// Forgets a node (it left the cluster).
    pub fn remove(&mut self, id: u64) {
        self.nodes.remove(&id);
    }

    /// Keeps what nodes declared (capabilities, first seen) but not whether they are alive
    /// or what they run: a backup's registry, which a restored cluster's nodes fill anew.
    pub fn forget_liveness(&mut self) {
        for node in self.nodes.values_mut() {
            node.last_seen_ms = 0;
            node.units.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_heartbeats() {
        let mut r = Registry::default();
        let report = NodeReport {
            info: NodeInfo {
                id: 2,
                tags: vec!["gpu".into()],
                ..NodeInfo::default()
            },
            units: vec![],
        };
        r.beat(&report, 10_000);
        assert!(r.alive(2, 10_000 + DEAD_AFTER_MS));
        assert!(!r.alive(2, 10_001 + DEAD_AFTER_MS));
        assert!(!r.alive(3, 10_000));
        assert_eq!(r.live(10_000 + DEAD_AFTER_MS).count(), 1);
        assert_eq!(r.live(10_001 + DEAD_AFTER_MS).count(), 0);
        // A late-applied older beat never moves last_seen back.
        r.beat(&report, 9_000);
        assert_eq!(r.get(2).unwrap().last_seen_ms, 10_000);
        assert_eq!(r.get(2).unwrap().first_seen_ms, 10_000);
    }
}
