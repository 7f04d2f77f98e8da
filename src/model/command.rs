//! Commands that go through the Raft log, and what applying one produced.

use std::collections::BTreeMap;

use push_protocol::{ByteBuf, CommitOutcome, ErrorBody, Value};
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
    /// The command was refused; the state is unchanged.
    Failed(ErrorBody),
}
