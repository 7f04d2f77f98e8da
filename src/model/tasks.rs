//! The task registry: which node runs which daemon unit (written by the leader), restart
//! generations, and schedule firings.
//!
//! The leader decides placement and firing times outside the state machine and proposes
//! them; applying only records them, so every node agrees on who runs what. A firing is
//! recorded only if it is newer than the last one, so a retried or duplicate proposal (two
//! leaders in quick succession) fires a period at most once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where one unit runs and how many times it was asked to restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub nodes: Vec<u64>,
    pub generation: u64,
}

/// An app's units for the version they were placed for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AppTasks {
    pub version: u64,
    pub units: BTreeMap<String, Placement>,
    pub schedules: Vec<String>,
}

/// The last firing of one schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub due_ms: u64,
    pub seq: u64,
    pub nodes: Vec<u64>,
}

/// Every app's placements and every schedule's last firing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tasks {
    apps: BTreeMap<String, AppTasks>,
    /// Keyed by (app, schedule name).
    firings: BTreeMap<(String, String), Firing>,
}

impl Tasks {
    pub fn app(&self, app: &str) -> Option<&AppTasks> {
        self.apps.get(app)
    }

    pub fn apps(&self) -> impl Iterator<Item = (&String, &AppTasks)> {
        self.apps.iter()
    }

    /// Replaces an app's placement; units that stay keep their restart generation.
    pub fn assign(
        &mut self,
        app: &str,
        version: u64,
        units: &BTreeMap<String, Vec<u64>>,
        schedules: &[String],
    ) {
        let entry = self.apps.entry(app.to_string()).or_default();
        let old = std::mem::take(&mut entry.units);
        entry.version = version;
        entry.schedules = schedules.to_vec();
        entry.units = units
            .iter()
            .map(|(name, nodes)| {
                let generation = old.get(name).map_or(0, |p| p.generation);
                (
                    name.clone(),
                    Placement {
                        nodes: nodes.clone(),
                        generation,
                    },
                )
            })
            .collect();
    }

    /// Bumps the generation of unit `name` (and of its partitions `name[i]`) in `app`, or in
    /// every app when None. Returns the units restarted as `app/unit`.
    pub fn restart(&mut self, app: Option<&str>, name: &str) -> Vec<String> {
        let mut restarted = Vec::new();
        for (app_name, tasks) in &mut self.apps {
            if app.is_some_and(|a| a != app_name) {
                continue;
            }
            for (unit, placement) in &mut tasks.units {
                if unit == name || is_partition_of(unit, name) {
                    placement.generation += 1;
                    restarted.push(format!("{app_name}/{unit}"));
                }
            }
        }
        restarted
    }

    /// Records a firing if it is newer than the last; returns whether it was recorded.
    pub fn fire(&mut self, app: &str, name: &str, due_ms: u64, nodes: &[u64]) -> bool {
        let entry = self
            .firings
            .entry((app.to_string(), name.to_string()))
            .or_default();
        if entry.seq > 0 && due_ms <= entry.due_ms {
            return false;
        }
        entry.due_ms = due_ms;
        entry.seq += 1;
        entry.nodes = nodes.to_vec();
        true
    }

    pub fn firing(&self, app: &str, name: &str) -> Option<&Firing> {
        self.firings.get(&(app.to_string(), name.to_string()))
    }

    pub fn firings(&self) -> impl Iterator<Item = (&(String, String), &Firing)> {
        self.firings.iter()
    }
}

/// Whether `unit` is `name[i]`, a partition of `name`.
pub fn is_partition_of(unit: &str, name: &str) -> bool {
    unit.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('['))
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|n| n.parse::<u32>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_keeps_generations_and_restart_bumps_them() {
        let mut t = Tasks::default();
        let mut units = BTreeMap::new();
        units.insert("worker".to_string(), vec![1]);
        units.insert("h[0]".to_string(), vec![2]);
        units.insert("h[1]".to_string(), vec![3]);
        t.assign("main", 1, &units, &[]);
        assert_eq!(t.restart(None, "h"), vec!["main/h[0]", "main/h[1]"]);
        assert_eq!(t.restart(Some("other"), "worker"), Vec::<String>::new());
        units.insert("worker".to_string(), vec![2]);
        t.assign("main", 2, &units, &["tick".to_string()]);
        let app = t.app("main").unwrap();
        assert_eq!(app.version, 2);
        assert_eq!(app.units["h[0]"].generation, 1);
        assert_eq!(app.units["worker"].generation, 0);
        assert_eq!(app.units["worker"].nodes, vec![2]);
    }

    #[test]
    fn a_period_fires_once() {
        let mut t = Tasks::default();
        assert!(t.fire("main", "tick", 5_000, &[1]));
        assert!(!t.fire("main", "tick", 5_000, &[2]));
        assert!(!t.fire("main", "tick", 4_000, &[2]));
        assert!(t.fire("main", "tick", 6_000, &[2]));
        let f = t.firing("main", "tick").unwrap();
        assert_eq!((f.seq, f.due_ms, f.nodes.clone()), (2, 6_000, vec![2]));
    }

    #[test]
    fn partition_names() {
        assert!(is_partition_of("h[3]", "h"));
        assert!(!is_partition_of("h[x]", "h"));
        assert!(!is_partition_of("hx[1]", "h"));
    }
}
