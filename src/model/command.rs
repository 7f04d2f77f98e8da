//! Commands that go through the Raft log, and what applying one produced.

use std::collections::BTreeMap;

use push_protocol::{
    AuditNote, ByteBuf, CommitOutcome, ErrorBody, NodeReport, Op, SecretText, TsConfig, Value,
};

use crate::model::settings::SettingKind;
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
    /// Client writes the leader grouped into one entry (one append, one fsync, one round of
    /// replication), applied in order as if each were its own entry; see [`Applied::Batch`].
    Batch(Vec<CommandOp>),
    /// Add a user (its secret drawn, and hashed, by the proposer).
    UserAdd(Box<crate::model::users::User>),
    /// Replace user `name`'s secret hash.
    UserRotate {
        name: String,
        secret_hash: String,
        by: String,
    },
    /// Remove the user with this name or accessor.
    UserRevoke {
        user: String,
    },
    /// Set one of an app's secrets or config entries (None: remove it); `by` is who, as the
    /// audit log names them.
    Setting {
        app: String,
        kind: SettingKind,
        name: String,
        value: Option<SecretText>,
        by: String,
    },
    /// Append an event to `app`'s channel `channel` (format 4).
    Publish {
        app: String,
        channel: String,
        data: String,
    },
    /// Blob `hash` of `size` bytes is the concatenation of the blobs `pieces` (format 4).
    JoinBlob {
        hash: String,
        size: u64,
        pieces: Vec<String>,
    },
}

impl CommandOp {
    /// The state change a client's `op` asks for, when it is one that goes through the log as
    /// it is (None for reads, evals and ops the leader handles itself, such as a take). The
    /// one conversion from the wire's [`Op`]; an audited op converts only when it wraps a
    /// deploy, rollback or restart.
    pub fn from_op(op: &Op) -> Option<CommandOp> {
        Some(match op {
            Op::KvSet { map, key, value } => CommandOp::KvSet {
                map: map.clone(),
                key: key.clone(),
                value: value.clone(),
            },
            Op::KvDelete { map, key } => CommandOp::KvDelete {
                map: map.clone(),
                key: key.clone(),
            },
            Op::KvCas {
                map,
                key,
                expected,
                new,
            } => CommandOp::KvCas {
                map: map.clone(),
                key: key.clone(),
                expected: expected.clone(),
                new: new.clone(),
            },
            Op::PutBlobs { blobs } => CommandOp::PutBlobs {
                blobs: blobs.clone(),
            },
            Op::JoinBlob { hash, size, pieces } => CommandOp::JoinBlob {
                hash: hash.clone(),
                size: *size,
                pieces: pieces.clone(),
            },
            Op::Commit {
                app,
                tree,
                message,
                author,
                activate,
            } => CommandOp::Commit {
                app: app.clone(),
                tree: tree.clone(),
                message: message.clone(),
                author: author.clone(),
                activate: *activate,
            },
            Op::Activate { app, version } => CommandOp::Activate {
                app: app.clone(),
                version: *version,
            },
            Op::Restart { app, name } => CommandOp::Restart {
                app: app.clone(),
                name: name.clone(),
            },
            Op::QueuePut { queue, values } => CommandOp::QueuePut {
                queue: queue.clone(),
                values: values.clone(),
            },
            Op::QueueAck { queue, id } => CommandOp::QueueAck {
                queue: queue.clone(),
                id: *id,
            },
            Op::Heartbeat(report) => CommandOp::Heartbeat(report.clone()),
            Op::TsAppend {
                series,
                points,
                config,
            } => CommandOp::TsAppend {
                series: series.clone(),
                points: points.clone(),
                config: config.clone(),
            },
            Op::TsCursor { series, unit, upto } => CommandOp::TsCursor {
                series: series.clone(),
                unit: unit.clone(),
                upto: *upto,
            },
            Op::AuditRecord(notes) => CommandOp::Audit(notes.clone()),
            Op::Publish { app, channel, data } => CommandOp::Publish {
                app: app.clone(),
                channel: channel.clone(),
                data: data.clone(),
            },
            Op::SecretSet { app, name, value } => CommandOp::Setting {
                app: app.clone(),
                kind: SettingKind::Secret,
                name: name.clone(),
                value: value.clone(),
                by: NODE.to_string(),
            },
            Op::ConfigSet { app, key, value } => CommandOp::Setting {
                app: app.clone(),
                kind: SettingKind::Config,
                name: key.clone(),
                value: value.clone().map(SecretText),
                by: NODE.to_string(),
            },
            Op::Audited { note, op } => match op.as_ref() {
                Op::Commit { .. } | Op::Activate { .. } | Op::Restart { .. } => {
                    CommandOp::Audited {
                        note: note.clone(),
                        op: Box::new(CommandOp::from_op(op)?),
                    }
                }
                Op::SecretSet { .. } | Op::ConfigSet { .. } => {
                    let mut setting = CommandOp::from_op(op)?;
                    if let CommandOp::Setting { by, .. } = &mut setting {
                        // The audit note's `who` is "user: client from ip".
                        *by = note.who.split(": ").next().unwrap_or_default().to_string();
                    }
                    CommandOp::Audited {
                        note: note.clone(),
                        op: Box::new(setting),
                    }
                }
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// Who set a secret or config entry that no person's request carried.
const NODE: &str = "node";

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
    /// One outcome per op of a [`CommandOp::Batch`], in order.
    Batch(Vec<Applied>),
    /// The users a user command added, rotated or removed.
    Users {
        names: Vec<String>,
    },
    /// The id a published event got in its channel (format 4).
    Published {
        id: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_convert_and_reads_do_not() {
        let set = Op::KvSet {
            map: "m".into(),
            key: "k".into(),
            value: Value::Int(1),
        };
        assert!(matches!(
            CommandOp::from_op(&set),
            Some(CommandOp::KvSet { map, key, value: Value::Int(1) }) if map == "m" && key == "k"
        ));
        let get = Op::KvGet {
            map: "m".into(),
            key: "k".into(),
            read: push_protocol::ReadMode::Stale,
        };
        assert!(CommandOp::from_op(&get).is_none());
        let take = Op::QueueTake {
            queue: "q".into(),
            lease_ms: 1,
            wait_ms: 0,
        };
        assert!(
            CommandOp::from_op(&take).is_none(),
            "a take is the leader's own work"
        );
    }

    #[test]
    fn only_changes_travel_audited() {
        let note = AuditNote {
            node: 1,
            time_ms: 0,
            who: "someone".into(),
            action: "restart".into(),
            app: None,
            detail: "d".into(),
        };
        let restart = Op::Audited {
            note: note.clone(),
            op: Box::new(Op::Restart {
                app: None,
                name: "d".into(),
            }),
        };
        assert!(matches!(
            CommandOp::from_op(&restart),
            Some(CommandOp::Audited { op, .. }) if matches!(*op, CommandOp::Restart { .. })
        ));
        let eval = Op::Audited {
            note,
            op: Box::new(Op::KvSet {
                map: "m".into(),
                key: "k".into(),
                value: Value::None,
            }),
        };
        assert!(CommandOp::from_op(&eval).is_none());
    }
}
