//! Task specs as an app version declares them (`push.daemon`, `push.every`, `push.cron`,
//! `series.handler`): read from Python by the runtime, placed by the leader's task loop.
//!
//! Plain data shared by both, so neither has to import the other.

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

/// The tasks of an app's HEAD as loaded on this node.
#[derive(Clone, Debug, Deserialize)]
pub struct HeadTasks {
    pub version: u64,
    pub tasks: Vec<TaskSpec>,
}
