//! Messages: the handshake, the client requests ([`Op`]) and their replies ([`Reply`]).
//!
//! A request frame is `[u64 id][Op]`, a response frame `[u64 id][u8 last][Result<Reply,
//! ErrorBody>]`. The id sits outside the encoded op so that a request whose op this node does
//! not know (an older node, a newer client) still gets an error addressed to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::debug::{DebugAction, DebugReply};
use crate::records::*;
use crate::users::{Identity, UserInfo, UserRole};
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

/// First frame on a connection, in the frozen layout of [`crate::format::handshake`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    /// The highest format the sender speaks.
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
    /// The format both ends use from here on: the lowest of the two ends' highest.
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
    /// Client and node have no format version in common.
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
    /// Authenticated, but the user's role does not allow this request.
    Forbidden,
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
    /// Completions for `code` with the cursor at byte offset `cursor`: in `module`'s
    /// namespace when given (an editor's file of the app), else in `session`'s.
    Complete {
        session: Option<u64>,
        code: String,
        cursor: usize,
        /// Since format 4; a format-3 node completes in the session instead.
        #[serde(
            default,
            deserialize_with = "crate::format::added_in_4",
            skip_serializing_if = "crate::format::absent_before_4"
        )]
        module: Option<String>,
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
    /// Create user `name` with `role` (for `apps`, or every app when empty), valid for
    /// `ttl_ms` (None: until revoked). The reply carries the secret, shown this once.
    UserAdd {
        name: String,
        role: UserRole,
        apps: Vec<String>,
        ttl_ms: Option<u64>,
    },
    /// Every user (never a secret or its hash).
    UserList,
    /// Remove the user with this name or accessor: its secret is refused from then on,
    /// on open connections too.
    UserRevoke {
        user: String,
    },
    /// Give user `name` a new secret; the old one is refused from then on.
    UserRotate {
        name: String,
    },
    /// Who this connection is, as the node authenticated it.
    WhoAmI,
    /// Remove node `id` (a voter or a learner, running or dead) from the members. Refused
    /// for a node that is not a member, for the last voter, and when the voters left would
    /// not have a live majority. Answered with [`Reply::Joined`] (the members after it).
    Remove {
        id: u64,
    },
    /// Add node `id` at `addr` as a learner (a non-voting member that replicates and serves
    /// reads). Answered with [`Reply::Joined`].
    JoinLearner {
        id: u64,
        addr: String,
    },
    /// Make learner `id` a voter. Answered with [`Reply::Joined`].
    Promote {
        id: u64,
    },
    /// Open an eval session on this node's Python worker `worker` (1-based, as `push status`
    /// numbers them in their pool); answered like `SessionOpen`. (Format 3.)
    SessionOpenOn {
        worker: u32,
        /// The app pool the worker is in (an app's name, or its row's `pool`); None: the
        /// node's main pool. Since format 4.
        #[serde(
            default,
            deserialize_with = "crate::format::added_in_4",
            skip_serializing_if = "crate::format::absent_before_4"
        )]
        pool: Option<String>,
    },
    /// Set secret `name` of `app`, or remove it when `value` is None. The value is never
    /// logged, audited or shown; only admins and the app's own code read it back.
    SecretSet {
        app: String,
        name: String,
        value: Option<SecretText>,
    },
    /// The secrets of `app`: names, who set them and when, never their values.
    Secrets {
        app: String,
    },
    /// The value of secret `name` of `app`.
    SecretGet {
        app: String,
        name: String,
    },
    /// Set config entry `key` of `app`, or remove it when `value` is None.
    ConfigSet {
        app: String,
        key: String,
        value: Option<String>,
    },
    /// Every config entry of `app`, with its value.
    Config {
        app: String,
    },
    /// A consistent copy of the replicated state at a committed index (`push backup`):
    /// answered with [`BackupPart`]s, `Begin`, then `Chunk`s, the last frame `End`.
    Backup,
    /// The Python this node runs app code with, for resolving an app's dependencies into
    /// wheels that install there (`push deploy`). Answered with [`Reply::Platform`]. (Format 4.)
    Platform,
    /// The Python environments this node installed for apps' dependencies, with their size
    /// and the versions using them (`push envs`). Answered with [`Reply::Envs`]. (Format 4.)
    Envs,
    /// Post-mortem of kept failures and call tracing (`push errors`, the REPL's `:pm` and
    /// `:trace`). `here`: this node only (what nodes ask each other); otherwise the node
    /// asks the members it concerns. `scope`: the apps the requester may see (empty: every
    /// app); the node that takes the request from a user sets it from the user's role.
    /// Answered with [`Reply::Debug`]. (Format 4.)
    Debug {
        action: DebugAction,
        here: bool,
        scope: Vec<String>,
    },
    /// Publish `data` as the next event of `app`'s channel `channel`: replicated, kept in the
    /// channel's bounded history and sent to its subscribers on every node. Answered with
    /// [`Reply::Published`]. (Format 4.)
    Publish {
        app: String,
        channel: String,
        data: String,
    },
    /// Store blob `hash` of `size` bytes as the concatenation of the blobs `pieces`, uploaded
    /// before with `PutBlobs` (a file larger than one upload). The pieces are forgotten once
    /// joined. Answered with [`Reply::Stored`]. (Format 4.)
    JoinBlob {
        hash: String,
        size: u64,
        pieces: Vec<String>,
    },
    /// The paths of a version of `app` (None: HEAD) with each file's blob hash (SHA-256, hex)
    /// and size, without their bytes (`push export` of a version too big for one reply). Answered with
    /// [`Reply::FileSizes`]. (Format 4.)
    FileSizes {
        app: String,
        version: Option<u64>,
    },
    /// At most [`FILE_PART_BYTES`] of file `path` of `app`'s version `version`, from byte
    /// `offset` (empty past the end). Answered with [`Reply::FilePart`]. (Format 4.)
    FilePart {
        app: String,
        version: u64,
        path: String,
        offset: u64,
    },
}

/// The most bytes one [`Op::FilePart`] answers with.
pub const FILE_PART_BYTES: u64 = 4 << 20;

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
    /// A user created or rotated, with its secret (shown this once; nodes keep only a hash).
    UserSecret {
        user: UserInfo,
        secret: String,
    },
    Users(Vec<UserInfo>),
    /// The names of the users removed.
    Revoked(Vec<String>),
    WhoAmI(Identity),
    /// An app's secrets (without values) or config entries (with values), by name.
    Settings(Vec<SettingInfo>),
    /// One secret's value, or None when the app has no such secret.
    Secret(Option<SecretText>),
    /// A piece of a backup stream (see [`Op::Backup`]).
    Backup(BackupPart),
    /// The answer to [`Op::Platform`].
    Platform(PlatformInfo),
    /// The answer to [`Op::Envs`], one row per environment.
    Envs(Vec<EnvRow>),
    /// The answer to [`Op::Debug`].
    Debug(DebugReply),
    /// The answer to [`Op::Publish`]: the event's id in its channel and the log index.
    Published {
        id: u64,
        index: u64,
    },
    /// The answer to [`Op::FileSizes`]: the version read, and each file's (blob hash, size)
    /// by path.
    FileSizes {
        version: u64,
        files: BTreeMap<String, (String, u64)>,
    },
    /// The answer to [`Op::FilePart`].
    FilePart(serde_bytes::ByteBuf),
}

/// The body of a response frame.
pub type Outcome = Result<Reply, ErrorBody>;
