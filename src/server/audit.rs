//! What a person asks for, noted for the audit log at the edge where the request arrives.
//!
//! Changes (deploys, rollbacks, restarts) travel wrapped in [`Op::Audited`] so the change and
//! its record commit as one log entry. Evals, hot-patches and lambdas change no replicated
//! state: their notes queue here and one task proposes them in batches, so an eval never
//! waits for Raft.

use std::sync::Mutex;
use std::time::Duration;

use push_protocol::{AuditNote, Op, RunFunc};
use tokio::sync::mpsc;

use crate::node::{now_ms, Node};
use crate::shutdown::Shutdown;

/// Most notes one batch proposes.
const BATCH: usize = 256;

/// The queue of notes waiting to be proposed.
pub struct Recorder {
    tx: mpsc::UnboundedSender<AuditNote>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<AuditNote>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Recorder {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Recorder {
    fn note(&self, note: AuditNote) {
        // Fails only once the flusher has stopped, at shutdown.
        let _ = self.tx.send(note);
    }
}

/// Notes `op` for the audit log if it is something a person does; returns the op to run
/// (a change comes back wrapped so its record commits with it).
pub fn wrap(node: &Node, op: Op, who: &str) -> Op {
    let note = |action: &str, app: Option<&str>, detail: String| AuditNote {
        node: node.id,
        time_ms: now_ms(),
        who: who.to_string(),
        action: action.to_string(),
        app: app.map(str::to_string),
        detail: crate::model::audit::cut(&detail, crate::model::audit::MAX_DETAIL),
    };
    let recorded = match &op {
        Op::Commit {
            app, tree, message, ..
        } => {
            let note = note(
                "deploy",
                Some(app),
                format!("{} files: {message}", tree.len()),
            );
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        Op::Activate { app, version } => {
            let to = version.map_or("the previous version".to_string(), |v| v.to_string());
            let note = note("activate", Some(app), format!("to {to}"));
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        Op::Restart { app, name } => {
            let note = note("restart", app.as_deref(), name.clone());
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        Op::Eval {
            code,
            module: Some(module),
            ..
        } => note("hot-patch", None, format!("in {module}: {code}")),
        Op::Eval { code, .. } => note("eval", None, code.clone()),
        Op::EvalAll { code } => note("eval", None, format!("on every node: {code}")),
        Op::Run { func, on, .. } => {
            let what = match func {
                RunFunc::Path(path) => path.clone(),
                RunFunc::Code { name, .. } => format!("{name} (shipped code)"),
            };
            note("run", None, format!("{what} on {on:?}"))
        }
        _ => return op,
    };
    node.audit.note(recorded);
    op
}

/// Proposes queued notes in batches until shutdown, retrying while there is no leader.
pub async fn flush(node: std::sync::Arc<Node>, mut shutdown: Shutdown) {
    let rx = node.audit.rx.lock().ok().and_then(|mut rx| rx.take());
    let Some(mut rx) = rx else {
        return;
    };
    loop {
        let first = tokio::select! {
            _ = shutdown.wait() => return,
            note = rx.recv() => match note {
                Some(note) => note,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(note) => batch.push(note),
                Err(_) => break,
            }
        }
        for attempt in 0..20u32 {
            let op = Op::AuditRecord(batch.clone());
            match crate::server::dispatch::handle(&node, op).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(attempt, "audit records not written yet: {}", e.message);
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))) => {}
                    }
                }
            }
        }
    }
}
