//! The replicated state and its deterministic transition function.
//!
//! **Architecture Invariant:** nothing in `model` does I/O, reads a clock, draws random numbers
//! or touches Python. [`apply`] is a pure function of the state and the command, so every node
//! that applies the same log reaches the same state. Times arrive inside the [`Command`],
//! stamped by the node that proposed it. A tidy test greps this folder to keep it so.

pub mod audit;
pub mod channels;
pub mod code_store;
pub mod command;
pub mod kv;
pub mod queue;
pub mod registry;
pub mod settings;
pub mod spec;
pub mod tasks;
pub mod timeseries;
pub mod users;

use serde::{Deserialize, Serialize};

pub use audit::AuditLog;
pub use channels::Channels;
pub use code_store::CodeStore;
pub use command::{Applied, Command, CommandOp};
pub use kv::Kv;
pub use queue::Queues;
pub use registry::Registry;
pub use settings::Settings;
pub use tasks::Tasks;
pub use timeseries::Timeseries;
pub use users::Users;

/// Everything the state machine holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub kv: Kv,
    pub code: CodeStore,
    pub queues: Queues,
    pub nodes: Registry,
    pub tasks: Tasks,
    pub timeseries: Timeseries,
    pub audit: AuditLog,
    #[serde(deserialize_with = "push_protocol::format::added_in_2")]
    pub users: Users,
    /// Each app's secrets and config.
    #[serde(
        default,
        deserialize_with = "push_protocol::format::added_in_3",
        skip_serializing_if = "push_protocol::format::absent_before_3"
    )]
    pub settings: Settings,
    /// Each app's channels with their bounded histories (format 4).
    #[serde(
        default,
        deserialize_with = "push_protocol::format::added_in_4",
        skip_serializing_if = "push_protocol::format::absent_before_4"
    )]
    pub channels: Channels,
}

/// Applies one command. Failures are outcomes (returned to the proposer), never panics, and
/// a failed command leaves the state as it was.
pub fn apply(state: &mut State, command: &Command) -> Applied {
    apply_op(state, command.time_ms, &command.op)
}

fn apply_op(state: &mut State, time_ms: u64, op: &CommandOp) -> Applied {
    match op {
        CommandOp::Audited { note, op } => {
            let applied = apply_op(state, time_ms, op);
            let (action, detail) = match &applied {
                Applied::Failed(_) => return applied,
                Applied::Committed(push_protocol::CommitOutcome::Created {
                    version,
                    activated,
                }) => (
                    None,
                    Some(format!(
                        "version {version}{} — {}",
                        if *activated { ", now HEAD" } else { "" },
                        note.detail
                    )),
                ),
                Applied::Committed(push_protocol::CommitOutcome::Unchanged { head }) => (
                    None,
                    Some(format!("unchanged, HEAD stays {head} — {}", note.detail)),
                ),
                Applied::Activated { from, to } => {
                    let back = from.is_some_and(|f| *to < f);
                    let from = from.map_or("none".to_string(), |f| f.to_string());
                    (
                        Some(if back { "rollback" } else { "activate" }),
                        Some(format!("HEAD {from} → {to}")),
                    )
                }
                Applied::Restarted { units } => (None, Some(units.join(", "))),
                _ => (None, None),
            };
            state.audit.record(note, action, detail);
            applied
        }
        CommandOp::Audit(notes) => {
            for note in notes {
                state.audit.record(note, None, None);
            }
            Applied::Written
        }
        CommandOp::KvSet { map, key, value } => {
            state.kv.set(map, key, value.clone());
            Applied::Written
        }
        CommandOp::KvDelete { map, key } => Applied::Deleted {
            existed: state.kv.delete(map, key),
        },
        CommandOp::KvCas {
            map,
            key,
            expected,
            new,
        } => {
            let (ok, current) = state.kv.compare_and_set(map, key, expected.as_ref(), new);
            Applied::Cas { ok, current }
        }
        CommandOp::PutBlobs { blobs } => Applied::Stored {
            count: state.code.put_blobs(blobs),
        },
        CommandOp::JoinBlob { hash, size, pieces } => {
            match state.code.join_blob(hash, *size, pieces) {
                Ok(count) => Applied::Stored { count },
                Err(e) => Applied::Failed(e),
            }
        }
        CommandOp::Commit {
            app,
            tree,
            message,
            author,
            activate,
        } => match state
            .code
            .commit(app, tree, message, author, time_ms, *activate)
        {
            Ok(outcome) => Applied::Committed(outcome),
            Err(e) => Applied::Failed(e),
        },
        CommandOp::QueuePut { queue, values } => Applied::Put {
            ids: state.queues.get_mut(queue).put(values),
        },
        CommandOp::QueueTake { queue, lease_ms } => {
            let now = state.queues.tick(time_ms);
            let item = state.queues.get_mut(queue).take(now, *lease_ms);
            Applied::Taken {
                item: item.map(|i| (i.id, i.value, i.deliveries)),
            }
        }
        CommandOp::QueueAck { queue, id } => {
            let now = state.queues.tick(time_ms);
            Applied::Acked {
                ok: state.queues.get_mut(queue).ack(*id, now),
            }
        }
        CommandOp::Heartbeat(report) => {
            state.nodes.beat(report, time_ms);
            Applied::Written
        }
        CommandOp::Assign {
            app,
            version,
            units,
            schedules,
        } => {
            state.tasks.assign(app, *version, units, schedules);
            Applied::Written
        }
        CommandOp::Restart { app, name } => {
            let units = state.tasks.restart(app.as_deref(), name);
            if units.is_empty() {
                Applied::Failed(push_protocol::ErrorBody::new(
                    push_protocol::ErrorCode::NotFound,
                    format!("no daemon called {name:?} is placed; see `push daemons` for names"),
                ))
            } else {
                Applied::Restarted { units }
            }
        }
        CommandOp::Fire {
            app,
            name,
            due_ms,
            nodes,
        } => Applied::Fired {
            ok: state.tasks.fire(app, name, *due_ms, nodes),
        },
        CommandOp::TsAppend {
            series,
            points,
            config,
        } => {
            let s = state.timeseries.get_mut(series);
            if let Some(config) = config {
                s.config = config.clone();
            }
            Applied::Appended {
                seqs: s.append(points, time_ms),
            }
        }
        CommandOp::TsCursor { series, unit, upto } => {
            state.timeseries.get_mut(series).advance(unit, *upto);
            Applied::Written
        }
        CommandOp::Activate { app, version } => match state.code.activate(app, *version) {
            Ok((from, to)) => Applied::Activated { from, to },
            Err(e) => Applied::Failed(e),
        },
        CommandOp::Batch(ops) => {
            Applied::Batch(ops.iter().map(|op| apply_op(state, time_ms, op)).collect())
        }
        CommandOp::UserAdd(user) => match state.users.add(user.as_ref().clone()) {
            Ok(()) => Applied::Users {
                names: vec![user.name.clone()],
            },
            Err(e) => Applied::Failed(e),
        },
        CommandOp::UserRotate {
            name,
            secret_hash,
            by,
        } => match state.users.rotate(name, secret_hash, time_ms, by) {
            Ok(()) => Applied::Users {
                names: vec![name.clone()],
            },
            Err(e) => Applied::Failed(e),
        },
        CommandOp::UserRevoke { user } => match state.users.revoke(user) {
            Ok(name) => Applied::Users { names: vec![name] },
            Err(e) => Applied::Failed(e),
        },
        CommandOp::Setting {
            app,
            kind,
            name,
            value,
            by,
        } => match state
            .settings
            .set(app, *kind, name, value.as_ref(), by, time_ms)
        {
            Ok(existed) if value.is_none() => Applied::Deleted { existed },
            Ok(_) => Applied::Written,
            Err(e) => Applied::Failed(e),
        },
        CommandOp::Publish { app, channel, data } => {
            let known = state.code.app(app).is_some();
            match state.channels.publish(app, channel, data, time_ms, known) {
                Ok(id) => Applied::Published { id },
                Err(e) => Applied::Failed(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Determinism: the same commands give byte-identical states.
    #[test]
    fn same_log_same_state() {
        let log: Vec<Command> = (0..50)
            .map(|i| Command {
                time_ms: 1_000 + i,
                op: CommandOp::KvSet {
                    map: format!("m{}", i % 3),
                    key: format!("k{}", i % 7),
                    value: push_protocol::Value::Int(i as i64),
                },
            })
            .collect();
        let run = || {
            let mut state = State::default();
            for c in &log {
                apply(&mut state, c);
            }
            push_protocol::codec::encode(&state).unwrap()
        };
        assert_eq!(run(), run());
    }

    /// A secret change is applied with who set it and audited by name; no `{:?}` of the
    /// command, the state or the audit log shows the value.
    #[test]
    fn a_secret_change_is_audited_by_name_only() {
        use push_protocol::{AuditNote, Op, SecretText};
        let note = AuditNote {
            node: 1,
            time_ms: 5,
            who: "alice: push-cli from 127.0.0.1".into(),
            action: "secret-set".into(),
            app: Some("shop".into()),
            detail: "API_KEY".into(),
        };
        let op = Op::Audited {
            note,
            op: Box::new(Op::SecretSet {
                app: "shop".into(),
                name: "API_KEY".into(),
                value: Some(SecretText("sk-hidden".into())),
            }),
        };
        let command = Command {
            time_ms: 9,
            op: CommandOp::from_op(&op).expect("a change"),
        };
        let mut state = State::default();
        assert_eq!(apply(&mut state, &command), Applied::Written);
        let listed = state.settings.list("shop", settings::SettingKind::Secret);
        assert_eq!((listed[0].set_by.as_str(), listed[0].set_ms), ("alice", 9));
        assert_eq!(listed[0].value, None);
        for text in [format!("{command:?}"), format!("{state:?}")] {
            assert!(!text.contains("sk-hidden"), "{text}");
        }
        let entries = state.audit.query(0, 10, None);
        assert_eq!(entries[0].detail, "API_KEY");
    }

    /// The tidy rule: no clocks, randomness, I/O or async in the model.
    #[test]
    fn model_is_pure() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
        let banned = [
            "SystemTime",
            "Instant::now",
            "rand::",
            "std::fs",
            "tokio",
            "std::net",
            "pyo3",
        ];
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for word in banned {
                assert!(
                    !code.contains(word),
                    "{} uses {word}: the model must stay deterministic",
                    path.display()
                );
            }
        }
    }
}
