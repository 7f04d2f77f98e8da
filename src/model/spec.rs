//! Task specs as an app version declares them (`push.daemon`, `push.every`, `push.cron`,
//! `series.handler`): read from Python by the runtime, placed by the leader's task loop.
//!
//! Plain data shared by both, so neither has to import the other.

use push_protocol::NodeInfo;
use serde::Deserialize;

/// A task as an app version declares it (`push.daemon`, `push.every`, `push.cron`,
/// `series.handler`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TaskSpec {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub on: serde_json::Value,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default, rename = "where")]
    pub place: Where,
    #[serde(default)]
    pub every_ms: Option<u64>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub series: Option<String>,
    #[serde(default)]
    pub partitions: Option<u32>,
    pub hash: String,
}

fn one() -> u32 {
    1
}

/// A placement constraint: every field set must hold for a node to qualify.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Where {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub gpu: Option<bool>,
    #[serde(default)]
    pub cores: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
}

impl Where {
    /// The requirements `node` fails, as a person would name them (`tag gpu`, `a GPU`,
    /// `4 cores`, `8192 MB of memory`); empty when the node qualifies.
    pub fn unmet(&self, node: &NodeInfo) -> Vec<String> {
        let mut out: Vec<String> = self
            .tags
            .iter()
            .filter(|t| !node.tags.contains(t))
            .map(|t| format!("tag {t}"))
            .collect();
        if let Some(gpu) = self.gpu.filter(|g| *g != node.gpu) {
            out.push(if gpu { "a GPU" } else { "no GPU" }.to_string());
        }
        if let Some(c) = self.cores.filter(|c| node.cores < *c) {
            out.push(format!("{c} cores"));
        }
        if let Some(m) = self.memory_mb.filter(|m| node.memory_mb < *m) {
            out.push(format!("{m} MB of memory"));
        }
        out
    }
}

impl TaskSpec {
    /// Why no live node can run this daemon: the placement requirement that failed, for
    /// `push daemons` (`unplaced: on=4 but node 4 is not live`, `unplaced: no live node has
    /// tag gpu (live: 1, 2, 3)`).
    pub fn why_unplaced(&self, live: &[NodeInfo]) -> String {
        let ids = |nodes: &[&NodeInfo]| {
            nodes
                .iter()
                .map(|n| n.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all: Vec<&NodeInfo> = live.iter().collect();
        if all.is_empty() {
            return "unplaced: no live node (none has sent a heartbeat lately)".into();
        }
        let candidates: Vec<&NodeInfo> = match self.on.as_u64() {
            Some(id) => match all.iter().find(|n| n.id == id) {
                Some(n) => vec![*n],
                None => {
                    return format!(
                        "unplaced: on={id} but node {id} is not live (live: {})",
                        ids(&all)
                    )
                }
            },
            None => all.clone(),
        };
        // A requirement no candidate meets is the one to name.
        let mut requirements: Vec<String> = Vec::new();
        for n in &candidates {
            for r in self.place.unmet(n) {
                if !requirements.contains(&r) {
                    requirements.push(r);
                }
            }
        }
        let nobody: Vec<&String> = requirements
            .iter()
            .filter(|r| candidates.iter().all(|n| self.place.unmet(n).contains(r)))
            .collect();
        if let Some(id) = self.on.as_u64().filter(|_| !requirements.is_empty()) {
            return format!(
                "unplaced: on={id} but node {id} lacks {}",
                requirements.join(", ")
            );
        }
        if !nobody.is_empty() {
            let names: Vec<&str> = nobody.iter().map(|r| r.as_str()).collect();
            return format!(
                "unplaced: no live node has {} (live: {})",
                names.join(", "),
                ids(&all)
            );
        }
        if requirements.is_empty() {
            return "unplaced: waiting for the leader to place it".into();
        }
        let each: Vec<String> = candidates
            .iter()
            .map(|n| format!("node {} lacks {}", n.id, self.place.unmet(n).join(", ")))
            .collect();
        format!(
            "unplaced: no live node has all of {} ({})",
            requirements.join(", "),
            each.join("; ")
        )
    }
}

/// The tasks of an app's HEAD as loaded on this node.
#[derive(Clone, Debug, Deserialize)]
pub struct HeadTasks {
    pub version: u64,
    pub tasks: Vec<TaskSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, tags: &[&str], gpu: bool, cores: u32) -> NodeInfo {
        NodeInfo {
            id,
            cores,
            memory_mb: 1024,
            gpu,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..NodeInfo::default()
        }
    }

    fn spec(on: serde_json::Value, place: Where) -> TaskSpec {
        TaskSpec {
            kind: "daemon".into(),
            name: "d".into(),
            on,
            replicas: 1,
            place,
            every_ms: None,
            cron: None,
            series: None,
            partitions: None,
            hash: "h".into(),
        }
    }

    #[test]
    fn the_failed_requirement_is_named() {
        let live = [node(1, &[], false, 2), node(2, &["ssd"], false, 8)];
        let tag = Where {
            tags: vec!["gpu".into()],
            ..Where::default()
        };
        assert_eq!(
            spec("any".into(), tag).why_unplaced(&live),
            "unplaced: no live node has tag gpu (live: 1, 2)"
        );
        let gpu = Where {
            gpu: Some(true),
            ..Where::default()
        };
        assert_eq!(
            spec("any".into(), gpu).why_unplaced(&live),
            "unplaced: no live node has a GPU (live: 1, 2)"
        );
        let mixed = Where {
            tags: vec!["ssd".into()],
            cores: Some(4),
            memory_mb: Some(4096),
            ..Where::default()
        };
        assert_eq!(
            spec("any".into(), mixed.clone()).why_unplaced(&live),
            "unplaced: no live node has 4096 MB of memory (live: 1, 2)"
        );
        let both = Where {
            memory_mb: None,
            ..mixed
        };
        assert_eq!(
            spec("any".into(), both.clone()).why_unplaced(&[node(1, &[], false, 8), node(2, &["ssd"], false, 2)]),
            "unplaced: no live node has all of tag ssd, 4 cores (node 1 lacks tag ssd; node 2 lacks 4 cores)"
        );
        assert_eq!(
            spec(serde_json::json!(3), Where::default()).why_unplaced(&live),
            "unplaced: on=3 but node 3 is not live (live: 1, 2)"
        );
        assert_eq!(
            spec(serde_json::json!(1), both).why_unplaced(&live),
            "unplaced: on=1 but node 1 lacks tag ssd, 4 cores"
        );
        assert!(spec("any".into(), Where::default())
            .why_unplaced(&[])
            .starts_with("unplaced: no live node"));
    }
}
