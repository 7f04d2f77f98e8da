//! Commands that go through the Raft log, and what applying one produced.

use std::collections::BTreeMap;

use push_protocol::{AuditNote, ByteBuf, CommitOutcome, ErrorBody, NodeReport, TsConfig, Value};
use serde::{Deserialize, Serialize};

/// One log entry's payload. `time_ms` is stamped by the proposing node, so apply reads no clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Command {
    pub time_ms: u64,
    pub op: CommandOp,
}

/// The state changes a command can ask for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CommandOp {
    KvSet {
        map: String,
        key: String,
        value: Value,
    },
    KvDelete {
        map: String,
        key: String,
    },
    KvCas {
        map: String,
        key: String,
        expected: Option<Value>,
        new: Option<Value>,
    },
    PutBlobs {
        blobs: Vec<ByteBuf>,
    },
    Commit {
        app: String,
        tree: BTreeMap<String, String>,
        message: String,
        author: String,
        activate: bool,
    },
    Activate {
        app: String,
        version: Option<u64>,
    },
    QueuePut {
        queue: String,
        values: Vec<Value>,
    },
    /// Lease the first ready item for `lease_ms` (from the command's time).
    QueueTake {
        queue: String,
        lease_ms: u64,
    },
    QueueAck {
        queue: String,
        id: u64,
    },
    /// A node's heartbeat: capabilities and the units it runs.
    Heartbeat(Box<NodeReport>),
    /// The leader's placement of an app's daemon units (unit -> nodes).
    Assign {
        app: String,
        version: u64,
        units: BTreeMap<String, Vec<u64>>,
        /// The schedules HEAD declares (they fire; they are not placed).
        schedules: Vec<String>,
    },
    /// Restart daemon `name` (all replicas and partitions).
    Restart {
        app: Option<String>,
        name: String,
    },
    /// A schedule's firing for the period due at `due_ms`, run by `nodes`.
    Fire {
        app: String,
        name: String,
        due_ms: u64,
        nodes: Vec<u64>,
    },
    TsAppend {
        series: String,
        points: Vec<(Option<i64>, Option<String>, Value)>,
        config: Option<TsConfig>,
    },
    TsCursor {
        series: String,
        unit: String,
        upto: u64,
    },
    /// A person's change, recorded in the audit log if it succeeds.
    Audited {
        note: AuditNote,
        op: Box<CommandOp>,
    },
    /// Audit records of things that change no replicated state (evals, hot-patches, lambdas).
    Audit(Vec<AuditNote>),
}

/// The result of applying a command; travels back to the proposer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// Blank and membership entries.
    #[default]
    Nothing,
    Written,
    Deleted {
        existed: bool,
    },
    Cas {
        ok: bool,
        current: Option<Value>,
    },
    Stored {
        count: usize,
    },
    Committed(CommitOutcome),
    Activated {
        from: Option<u64>,
        to: u64,
    },
    Put {
        ids: Vec<u64>,
    },
    /// (id, value, deliveries) of the leased item, or None when nothing was ready.
    Taken {
        item: Option<(u64, Value, u32)>,
    },
    Acked {
        ok: bool,
    },
    Restarted {
        units: Vec<String>,
    },
    /// Whether the firing was new (false: that period had already fired).
    Fired {
        ok: bool,
    },
    Appended {
        seqs: Vec<u64>,
    },
    /// The command was refused; the state is unchanged.
    Failed(ErrorBody),
}
