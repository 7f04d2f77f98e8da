//! What a person asks for, noted for the audit log where the request arrives.
//!
//! Changes (deploys, rollbacks, restarts) travel wrapped in [`Op::Audited`] so the change and
//! its record commit as one log entry. Evals, hot-patches and lambdas change no replicated
//! state: their notes queue in the node's [`crate::node::audit::Recorder`] and [`flush`]
//! proposes them in batches, so an eval never waits for Raft.

use std::time::Duration;

use push_protocol::{AuditNote, Op, RunFunc};

use super::leader::{self, Req};
use crate::clock::now_ms;
use crate::model::users::BOOTSTRAP;
use crate::model::CommandOp;
use crate::node::Node;
use crate::shutdown::Shutdown;

/// Most notes one batch proposes.
const BATCH: usize = 256;

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
        Op::UserAdd {
            name, role, apps, ..
        } => {
            let scope = if apps.is_empty() {
                String::new()
            } else {
                format!(" for {}", apps.join(", "))
            };
            let note = note("user-add", None, format!("{name} as {role}{scope}"));
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        Op::UserRotate { name } => {
            let note = note("user-rotate", None, name.clone());
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        Op::UserRevoke { user } => {
            let note = note("user-revoke", None, user.clone());
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        // Names only: a secret's value never reaches the audit log (nor a config value).
        Op::SecretSet { app, name, value } => {
            let action = if value.is_some() {
                "secret-set"
            } else {
                "secret-rm"
            };
            let note = note(action, Some(app), name.clone());
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        Op::ConfigSet { app, key, value } => {
            let action = if value.is_some() {
                "config-set"
            } else {
                "config-rm"
            };
            let note = note(action, Some(app), key.clone());
            return Op::Audited {
                note,
                op: Box::new(op),
            };
        }
        // Only code that defines or rebinds names in the module patches it; a read-only call
        // evaluated there is an eval.
        Op::Eval {
            code,
            module: Some(module),
            ..
        } => {
            let action = if super::statements::changes_module(code) {
                "hot-patch"
            } else {
                "eval"
            };
            note(action, None, format!("in {module}: {code}"))
        }
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

/// The audit note of a membership change (`Join`, `JoinLearner`, `Promote`, `Remove`) as it
/// arrives from `who`, to be queued once the change has committed. Membership changes are
/// raft membership entries, not commands, so they cannot travel `Audited`. A joining node
/// asks with the cluster token over a node connection (`who` is None there): its note names
/// the token and the node. Forwarded changes were noted where they arrived.
pub fn membership(node: &Node, op: &Op, who: Option<&str>) -> Option<AuditNote> {
    let (action, detail, joining) = match op {
        Op::Join { id, addr } => (
            "member-join",
            format!("node {id} at {addr} as a voter"),
            Some(*id),
        ),
        Op::JoinLearner { id, addr } => (
            "member-learner",
            format!("node {id} at {addr} as a learner"),
            Some(*id),
        ),
        Op::Promote { id } => ("member-promote", format!("node {id} to a voter"), None),
        Op::Remove { id } => ("member-remove", format!("node {id}"), None),
        _ => return None,
    };
    let who = match (who, joining) {
        (Some(who), _) => who.to_string(),
        (None, Some(id)) => format!("{BOOTSTRAP}: node {id} joining"),
        (None, None) => return None,
    };
    Some(AuditNote {
        node: node.id,
        time_ms: now_ms(),
        who,
        action: action.to_string(),
        app: None,
        detail,
    })
}

/// The audit note of `push node --leave`: node `node.id` asked for its own removal with the
/// cluster token.
pub fn leave(node: &Node) -> AuditNote {
    AuditNote {
        node: node.id,
        time_ms: now_ms(),
        who: format!("{BOOTSTRAP}: node {} (push node --leave)", node.id),
        action: "member-leave".to_string(),
        app: None,
        detail: format!("node {}", node.id),
    }
}

/// Proposes queued notes in batches until shutdown, retrying while there is no leader.
pub async fn flush(node: std::sync::Arc<Node>, mut shutdown: Shutdown) {
    let rx = node.audit.take_receiver();
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
            let req = Req {
                node: &node,
                op: &op,
                hops: 0,
            };
            match leader::write_command(&req, CommandOp::Audit(batch.clone())).await {
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
