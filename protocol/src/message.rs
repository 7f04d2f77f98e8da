//! Messages: the handshake, the client requests ([`Op`]) and their replies ([`Reply`]).
//!
//! A request frame is `[u64 id][Op]`, a response frame `[u64 id][u8 last][Result<Reply,
//! ErrorBody>]`. The id sits outside the encoded op so that a request whose op this node does
//! not know (an older node, a newer client) still gets an error addressed to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Value;

/// Magic bytes opening every hello, so stray connections are told apart from clients.
pub const MAGIC: [u8; 4] = *b"PUSH";

/// Who is connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A CLI, REPL or editor: sends [`Op`]s.
    Client,
    /// Another node: sends Raft RPCs.
    Peer,
}

/// First frame on a connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub protocol: u32,
    pub token: String,
    pub role: Role,
    /// Free text naming the client program and version, for logs.
    pub client: String,
}

/// Server's answer to an accepted hello.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Welcome {
    pub node_id: u64,
    pub protocol: u32,
    pub push_version: String,
}

/// What kind of failure an error reports; lets clients decide whether to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Bytes that are not a frame of this protocol.
    BadFrame,
    /// A frame over the size limit.
    TooLarge,
    /// Missing or wrong cluster token.
    Unauthorized,
    /// Client and node speak different protocol versions.
    VersionMismatch,
    /// A request this node does not understand.
    UnknownOp,
    /// The thing asked for does not exist.
    NotFound,
    /// The request is understood but refused (bad argument, failed validation).
    Invalid,
    /// No leader is known right now; retry shortly.
    NoLeader,
    /// The cluster or a peer could not be reached in time; retry.
    Unavailable,
    /// A bug or an unexpected failure inside the node.
    Internal,
}

/// An error sent to a client: a code and a message that says what to do next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadMode {
    /// Reflects every write acknowledged before the read began (confirmed with a quorum).
    #[default]
    Linearizable,
    /// Whatever this node has applied; fast, possibly behind.
    Stale,
}

/// A client request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Op {
    Ping,
    /// This node's view: role, term, indexes, members, HEADs.
    Status,
    /// Add node `id` at `addr` as a learner, then promote it to voter.
    Join {
        id: u64,
        addr: String,
    },
    KvGet {
        map: String,
        key: String,
        read: ReadMode,
    },
    KvList {
        map: String,
        prefix: String,
        read: ReadMode,
    },
    KvSet {
        map: String,
        key: String,
        value: Value,
    },
    KvDelete {
        map: String,
        key: String,
    },
    /// Sets `key` to `new` (or deletes it when `new` is None) only if its current value equals
    /// `expected` (None: absent).
    KvCas {
        map: String,
        key: String,
        expected: Option<Value>,
        new: Option<Value>,
    },
    /// Which of these blob hashes the code store lacks.
    MissingBlobs {
        hashes: Vec<String>,
    },
    /// Store module sources; they are addressed by their SHA-256.
    PutBlobs {
        blobs: Vec<serde_bytes::ByteBuf>,
    },
    /// Record a version of `app` whose tree maps paths to blob hashes.
    Commit {
        app: String,
        tree: BTreeMap<String, String>,
        message: String,
        author: String,
        activate: bool,
    },
    Versions {
        app: String,
    },
    /// Move HEAD to `version`, or to HEAD's parent when None (a rollback).
    Activate {
        app: String,
        version: Option<u64>,
    },
    Diff {
        app: String,
        from: u64,
        to: u64,
    },
    /// The files of a version (HEAD when None).
    Files {
        app: String,
        version: Option<u64>,
    },
    /// A request a follower passes to the leader; `hops` bounds forwarding loops.
    Forwarded {
        hops: u8,
        #[serde(deserialize_with = "crate::value::nested")]
        op: Box<Op>,
    },
    /// Open an evaluation session: its own Python namespace on this node.
    SessionOpen,
    /// Close a session and free its namespace.
    SessionClose {
        session: u64,
    },
    /// Evaluate statements or an expression. Streams [`Reply::Output`] frames while it runs,
    /// then ends with [`Reply::Evaluated`]. `module` evaluates inside a loaded app module's
    /// namespace (hot-patching); `session` None uses a throwaway namespace.
    Eval {
        session: Option<u64>,
        code: String,
        module: Option<String>,
    },
    /// Completions for `code` with the cursor at byte offset `cursor`.
    Complete {
        session: Option<u64>,
        code: String,
        cursor: usize,
    },
    /// Signature, docstring, source location and short repr of an expression's value.
    Inspect {
        session: Option<u64>,
        expr: String,
    },
    /// Whether `code` is a complete statement or needs more lines.
    IsComplete {
        code: String,
    },
    /// Interrupt the evaluation running in `session`.
    Interrupt {
        session: u64,
    },
    /// Evaluate `code` on every node of the cluster; results per node.
    EvalAll {
        code: String,
    },
    /// Append values to a queue.
    QueuePut {
        queue: String,
        values: Vec<Value>,
    },
    /// Lease the next item for `lease_ms`; wait up to `wait_ms` for one to arrive.
    QueueTake {
        queue: String,
        lease_ms: u64,
        wait_ms: u64,
    },
    /// Acknowledge a taken item so it is not offered again.
    QueueAck {
        queue: String,
        id: u64,
    },
    /// The first `n` ready items of a queue, without taking them.
    QueuePeek {
        queue: String,
        n: usize,
    },
    /// Depth, leased count and totals of every queue.
    QueueStats,
    /// A node's periodic report: its capabilities and the tasks it runs (sent by nodes).
    Heartbeat(Box<NodeReport>),
    /// The node registry: every node that has reported, with its capabilities and liveness.
    Nodes,
    /// Every daemon, partition handler and schedule with where and how it runs.
    Daemons,
    /// Restart daemon `name` (all its replicas or partitions) wherever it runs.
    Restart {
        app: Option<String>,
        name: String,
    },
    /// Log lines of daemon `name` after the given per-node sequence numbers. `here` answers
    /// from this node only (what nodes ask each other); otherwise every node running it is asked.
    Tail {
        app: Option<String>,
        name: String,
        after: Vec<(u64, u64)>,
        here: bool,
    },
    /// Run a function (a lambda) on the nodes `on` names; results per node.
    Run {
        func: RunFunc,
        args: Vec<Value>,
        on: RunOn,
    },
    /// Append points to a timeseries (`t_ms` None: the proposer's clock). `config`, when set,
    /// replaces the series' retention and partitioning.
    TsAppend {
        series: String,
        points: Vec<(Option<i64>, Option<String>, Value)>,
        config: Option<TsConfig>,
    },
    /// Points with `t0 <= t < t1` (either bound open), or the last `last` points.
    TsRange {
        series: String,
        t0: Option<i64>,
        t1: Option<i64>,
        last: Option<usize>,
        read: ReadMode,
    },
    /// Every timeseries with its size and settings.
    TsStats,
    /// A partition handler has processed its points up to `upto` (sent by nodes).
    TsCursor {
        series: String,
        unit: String,
        upto: u64,
    },
    /// Entries of the replicated audit log with `seq > after`, oldest first, at most `limit`;
    /// `action` keeps only one kind ("deploy", "rollback", "eval", "hot-patch", "restart").
    Audit {
        after: u64,
        limit: usize,
        action: Option<String>,
    },
    /// A change made on behalf of a person (a deploy, rollback or restart), recorded in the
    /// audit log in the same log entry as the change. The node that took the request from
    /// the client wraps it; clients need not.
    Audited {
        note: AuditNote,
        op: Box<Op>,
    },
    /// Audit records of actions that change no replicated state (evals, hot-patches,
    /// lambdas), sent by the node that ran them.
    AuditRecord(Vec<AuditNote>),
    /// Structured log records (node events at info and above, app `logging` records) with
    /// per-node `seq > after`, oldest first. `daemon` keeps records of that unit (and its
    /// partitions), `level` those at or above it ("debug", "info", "warn", "error"). `here`
    /// answers from this node only (what nodes ask each other); otherwise every member.
    Logs {
        after: Vec<(u64, u64)>,
        daemon: Option<String>,
        level: Option<String>,
        here: bool,
    },
}

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
    /// The node's soft limit on open file descriptors (0 where the OS does not say).
    pub fd_limit: u64,
    /// File descriptors the node has open now (0 where the OS does not say).
    pub fds_open: u64,
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

/// A successful reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    Pong,
    Status(Box<NodeStatus>),
    Joined {
        members: Vec<Member>,
    },
    Value(Option<Value>),
    Keys(Vec<String>),
    /// A write was committed at this log index.
    Written {
        index: u64,
    },
    Deleted {
        existed: bool,
        index: u64,
    },
    Cas {
        ok: bool,
        current: Option<Value>,
        index: u64,
    },
    Missing(Vec<String>),
    Stored {
        count: usize,
    },
    Committed(CommitOutcome),
    Versions {
        head: Option<u64>,
        versions: Vec<VersionInfo>,
    },
    Activated {
        from: Option<u64>,
        to: u64,
    },
    Diff(String),
    Files {
        version: u64,
        files: BTreeMap<String, serde_bytes::ByteBuf>,
    },
    Session {
        id: u64,
    },
    Closed {
        existed: bool,
    },
    /// Output printed by a running evaluation (never the last frame).
    Output {
        stream: Stream,
        text: String,
    },
    Evaluated(Box<EvalResult>),
    Completions {
        start: usize,
        items: Vec<String>,
    },
    Inspected(Box<Inspection>),
    IsComplete {
        complete: bool,
    },
    Interrupted {
        running: bool,
    },
    /// Per node: its result, or why it could not be asked.
    EvaluatedAll(Vec<(u64, Result<EvalResult, ErrorBody>)>),
    Put {
        ids: Vec<u64>,
    },
    Taken(Option<QueueItem>),
    Acked {
        ok: bool,
    },
    Peeked(Vec<QueueItem>),
    QueueStats(Vec<QueueStat>),
    Nodes(Vec<NodeEntry>),
    Daemons(Vec<DaemonRow>),
    Restarted {
        units: Vec<String>,
    },
    Lines(Vec<LogLine>),
    /// Per node: the lambda's return value, or its error.
    Ran(Vec<(u64, Result<Value, ErrorBody>)>),
    Appended {
        seqs: Vec<u64>,
    },
    Points(Vec<TsPoint>),
    TsStats(Vec<TsStat>),
    Audit(Vec<AuditEntry>),
    Logs(Vec<LogRecord>),
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
    /// The client as it named itself in its hello (program, user and host).
    pub who: String,
    /// "deploy", "rollback", "eval", "hot-patch" or "restart".
    pub action: String,
    pub app: Option<String>,
    /// The version made or activated, the evaluated source (cut to 4 KiB), or the units restarted.
    pub detail: String,
}

/// The body of a response frame.
pub type Outcome = Result<Reply, ErrorBody>;
