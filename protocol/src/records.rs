//! The data that requests and replies carry: node reports and status, the registry, daemon
//! rows and log lines, lambdas, timeseries and queue items, evaluation results, versions,
//! log records and audit entries, the platform and environments of dependencies, and the
//! parts of a backup stream. [`crate::message`] holds the envelopes ([`crate::Op`],
//! [`crate::Reply`]) around them.

use serde::{Deserialize, Serialize};

use crate::Value;

/// What a node can offer, registered with every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    pub addr: String,
    pub http: Option<String>,
    pub cores: u32,
    pub memory_mb: u64,
    pub gpu: bool,
    pub tags: Vec<String>,
    pub pid: u32,
}

/// How one task runs on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitReport {
    pub app: String,
    pub unit: String,
    /// "daemon", "partition" or "schedule".
    pub kind: String,
    /// "running", "stopping", "crashed", "backoff", "exited", "idle".
    pub state: String,
    pub restarts: u32,
    pub runs: u64,
    pub version: u64,
    /// The last crash's traceback, if any.
    pub error: Option<String>,
    pub since_ms: u64,
}

/// A node's heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub info: NodeInfo,
    pub units: Vec<UnitReport>,
}

/// A node as the registry knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub info: NodeInfo,
    pub alive: bool,
    pub last_seen_ms: u64,
}

/// One row of `push daemons`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonRow {
    pub app: String,
    pub unit: String,
    pub kind: String,
    /// None: no node matches its placement right now.
    pub node: Option<u64>,
    pub state: String,
    pub restarts: u32,
    pub runs: u64,
    pub version: Option<u64>,
    pub error: Option<String>,
}

/// A log line of a daemon, numbered per node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub node: u64,
    pub seq: u64,
    pub text: String,
}

/// Where a lambda runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOn {
    /// The node that received the request.
    Here,
    /// One live node, chosen by the cluster.
    Any,
    /// Every live node.
    All,
    Node(u64),
    /// Every live node with this tag.
    Tag(String),
}

/// What a lambda runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunFunc {
    /// `module:function` (or `module.function`) of the app at HEAD.
    Path(String),
    /// A marshalled code object (same Python on every node), its name, and the app module
    /// whose globals it sees (None: a fresh namespace with `push` imported).
    Code {
        code: serde_bytes::ByteBuf,
        name: String,
        module: Option<String>,
    },
}

/// A timeseries' retention and partitioning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsConfig {
    pub max_age_ms: Option<u64>,
    pub max_points: Option<u64>,
    pub partitions: u32,
}

/// One point of a timeseries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TsPoint {
    pub seq: u64,
    pub t_ms: i64,
    pub key: Option<String>,
    pub value: Value,
}

/// One timeseries' numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsStat {
    pub name: String,
    pub points: u64,
    pub appended: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub config: TsConfig,
}

/// An item handed out by a queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    pub id: u64,
    pub value: Value,
    /// 1 on first delivery; more when a lease ran out before an ack.
    pub deliveries: u32,
}

/// One queue's numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStat {
    pub name: String,
    pub ready: usize,
    pub leased: usize,
    pub puts: u64,
    pub acks: u64,
}

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One frame of a Python traceback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PyFrame {
    pub file: String,
    pub line: u32,
    pub function: String,
    pub source: String,
}

/// An exception raised by evaluated code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PyException {
    pub type_name: String,
    pub message: String,
    pub frames: Vec<PyFrame>,
    /// The traceback formatted as Python prints it.
    pub formatted: String,
}

/// The outcome of an evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalResult {
    /// `repr` of the last expression's value (None for statements or a None value).
    pub value: Option<String>,
    pub type_name: Option<String>,
    pub error: Option<PyException>,
    /// Set when a repr or a stream was cut: says how much.
    pub truncated: Option<String>,
    pub micros: u64,
    pub node: u64,
}

/// What `inspect` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    pub type_name: String,
    pub signature: Option<String>,
    pub doc: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub repr: String,
}

/// A member of the cluster as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
}

/// One node's own report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub addr: String,
    /// "leader", "follower", "candidate" or "learner".
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub members: Vec<Member>,
    /// On the leader: the last log index each member has matched.
    pub matched: Vec<(u64, Option<u64>)>,
    /// HEAD version of each app, as applied on this node.
    pub heads: Vec<(String, u64)>,
    pub push_version: String,
    pub uptime_ms: u64,
    /// The node's process id (for local tooling such as `push bench failover`).
    pub pid: u32,
    /// The node's HTTP address for app handlers, if it serves HTTP.
    pub http: Option<String>,
    /// The version of each app this node's Python runtime is serving.
    pub serving: Vec<(String, u64)>,
    /// Versions that failed to load on this node: (app, version, error).
    pub load_errors: Vec<(String, u64, String)>,
    /// Resident set size of the node's process, in bytes (0 where the OS does not say).
    pub rss_bytes: u64,
    /// CPU time the node's process has used since it started (user + system), in
    /// milliseconds; `push top` turns deltas of it into a CPU percentage.
    pub cpu_ms: u64,
    /// The version of the CPython this node embeds, as it reports itself ("3.11.7"). Nodes of
    /// one cluster may run different minor versions.
    pub python_version: String,
    /// The node's soft open-file limit (raised to the hard limit at start).
    pub fd_limit: u64,
    /// File descriptors the node's process has open.
    pub fds_open: u64,
    /// The format the node writes and prefers to speak ([`crate::FORMAT_VERSION`] of its
    /// release; 1 for a node of format 1, which does not say).
    pub format_version: u32,
    /// The oldest format the node reads and speaks.
    pub min_format_version: u32,
    /// The node's Python worker processes (added in format 3).
    #[serde(
        default,
        deserialize_with = "crate::format::added_in_3",
        skip_serializing_if = "crate::format::absent_before_3"
    )]
    pub workers: Vec<WorkerRow>,
}

/// One Python worker process of a node, for `push status`, `push top` and the REPL's
/// `:workers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// 1-based slot ("w1"); the slot keeps its number across restarts.
    pub slot: u32,
    /// 0 while no worker is up in this slot.
    pub pid: u32,
    pub up: bool,
    /// Requests and evals in flight on it.
    pub busy: u32,
    pub rss_bytes: u64,
    pub cpu_ms: u64,
    /// Times this slot's worker ended and was replaced.
    pub restarts: u64,
    pub uptime_ms: u64,
    /// How the previous worker of this slot ended ("was killed by signal 11 (SIGSEGV)").
    pub last_exit: Option<String>,
    /// The eval sessions living on it.
    pub sessions: Vec<u64>,
    /// Whether it runs the node's daemons and schedules.
    pub tasks: bool,
    /// The app pool it is in ("APP/ENV", ENV the first 12 characters of its environment's
    /// hash); None: the node's main pool. `slot` counts in its pool. Since format 4.
    #[serde(
        default,
        deserialize_with = "crate::format::added_in_4",
        skip_serializing_if = "crate::format::absent_before_4"
    )]
    pub pool: Option<String>,
}

/// One version in an app's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub number: u64,
    pub parent: Option<u64>,
    pub message: String,
    pub author: String,
    /// Milliseconds since the Unix epoch, stamped by the node that proposed the deploy.
    pub time_ms: u64,
    pub files: usize,
    /// SHA-256 over the tree, so identical trees are recognised.
    pub tree_hash: String,
}

/// What a commit did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitOutcome {
    /// A new version was recorded.
    Created { version: u64, activated: bool },
    /// The tree is identical to HEAD's: nothing was recorded.
    Unchanged { head: u64 },
}

/// One structured log record from a node's ring (`push logs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The node that wrote it.
    pub node: u64,
    /// Position in that node's ring, from 1; the cursor for the next `Logs` request.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// "error", "warn", "info", "debug" or "trace".
    pub level: String,
    /// The Rust module, or `app` for records from app code.
    pub target: String,
    pub message: String,
    pub app: Option<String>,
    pub version: Option<u64>,
    /// Where app code logged from: a daemon unit, `route METHOD /path`, `eval` or `lambda`.
    pub source: Option<String>,
    /// The Python logger's name, for app records.
    pub logger: Option<String>,
    /// Other fields of the event, as text.
    pub fields: Vec<(String, String)>,
}

/// What the node that took a request knows of it, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditNote {
    pub node: u64,
    pub time_ms: u64,
    pub who: String,
    pub action: String,
    pub app: Option<String>,
    pub detail: String,
}

/// One entry of the replicated audit log: who did what, when, through which node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch, stamped by the node that took the request.
    pub time_ms: u64,
    /// The node that took the request.
    pub node: u64,
    /// The authenticated user (a user's name, or `cluster-token`), then the client as it
    /// named itself in its hello (program, user and host) and its IP.
    pub who: String,
    /// "deploy", "rollback", "eval", "hot-patch" or "restart".
    pub action: String,
    pub app: Option<String>,
    /// The version made or activated, the evaluated source (cut to 4 KiB), or the units restarted.
    pub detail: String,
}

/// A secret's value. Stored and sent as a plain string, but `{:?}` never prints it, so no
/// log line of a request, command or reply can show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(..)")
    }
}

/// One secret or config entry of an app as listed: a secret's value is never listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingInfo {
    pub name: String,
    /// The config value; always None for a secret.
    pub value: Option<String>,
    /// Who set it, as the audit log names them.
    pub set_by: String,
    /// Milliseconds since the Unix epoch.
    pub set_ms: u64,
}

/// The interpreter a node runs app code with, in the terms `pip download` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformInfo {
    /// The full version, like "3.11.7" (`--python-version` takes major.minor).
    pub python: String,
    /// The implementation tag, like "cp" (`--implementation`).
    pub implementation: String,
    /// The ABI tag, like "cp311" (`--abi`).
    pub abi: String,
    /// The platform tags it installs, most specific first (`--platform`, each).
    pub platforms: Vec<String>,
}

/// One environment for an app's dependencies, as one node has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRow {
    /// The environment hash (SHA-256 of the sorted wheel hashes).
    pub hash: String,
    /// The app whose versions use it.
    pub app: String,
    /// The wheels it is made of (file names).
    pub wheels: Vec<String>,
    /// Its size on the answering node's disk, when installed there.
    pub bytes: Option<u64>,
    /// The versions of `app` that use it.
    pub versions: Vec<u64>,
    /// Whether it is the environment of `app`'s HEAD.
    pub head: bool,
}

/// The frames of a backup stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupPart {
    /// What follows: `bytes` of state in `format`, as applied at log `index` of `term`.
    Begin {
        format: u32,
        index: u64,
        term: u64,
        bytes: u64,
    },
    /// The next bytes of the state.
    Chunk(serde_bytes::ByteBuf),
    /// The SHA-256 (hex) of all the state bytes sent.
    End { sha256: String },
}
