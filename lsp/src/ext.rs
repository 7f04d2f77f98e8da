//! Push's extensions to LSP, as the editor plugins see them (lsp/README.md is the contract):
//! the `push.*` command names and argument objects, their results, and the `push/status`
//! notification.

use serde::{Deserialize, Serialize};
use tower_lsp_server::ls_types::{notification::Notification, Position, Range, Uri};

pub const EVAL: &str = "push.eval";
pub const EVAL_IN_MODULE: &str = "push.evalInModule";
pub const DEPLOY: &str = "push.deploy";
pub const ROLLBACK: &str = "push.rollback";
pub const INTERRUPT: &str = "push.interrupt";
pub const STATUS: &str = "push.status";
pub const ERRORS: &str = "push.errors";
pub const PM_OPEN: &str = "push.pm.open";
pub const PM_LOCALS: &str = "push.pm.locals";
pub const PM_EVAL: &str = "push.pm.eval";
pub const PM_REPLAY: &str = "push.pm.replay";

/// Every command the server executes.
pub const COMMANDS: [&str; 11] = [
    EVAL,
    EVAL_IN_MODULE,
    DEPLOY,
    ROLLBACK,
    INTERRUPT,
    STATUS,
    ERRORS,
    PM_OPEN,
    PM_LOCALS,
    PM_EVAL,
    PM_REPLAY,
];

/// Arguments of `push.eval` and `push.evalInModule`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalArgs {
    pub uri: Uri,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub range: Option<Range>,
    #[serde(default)]
    pub position: Option<Position>,
}

/// Arguments of `push.deploy`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DeployArgs {
    #[serde(default)]
    pub root: Option<String>,
}

/// Arguments of `push.rollback`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RollbackArgs {
    #[serde(default)]
    pub version: Option<u64>,
}

/// The result of an evaluation, for inline display.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct EvalOutcome {
    pub ok: bool,
    pub value: Option<String>,
    pub stdout: String,
    pub stderr: String,
    /// `"ZeroDivisionError: division by zero"`.
    pub error: Option<String>,
    /// The traceback formatted as Python prints it.
    pub traceback: Option<String>,
    /// What was evaluated, for placing inline results.
    pub range: Range,
    pub module: Option<String>,
    pub node: u64,
    pub micros: u64,
}

/// Result of `push.deploy`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Deployed {
    pub ok: bool,
    pub version: u64,
    pub summary: String,
}

/// Result of `push.rollback`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RolledBack {
    pub ok: bool,
    pub version: u64,
}

/// Result of `push.interrupt`: `ok` when an eval was running and was interrupted;
/// `restarted` when it had not stopped after the interrupt before (the node said so) and this
/// one restarted its python worker, losing the session's names, as `message` says.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Interrupted {
    pub ok: bool,
    pub running: bool,
    #[serde(default)]
    pub restarted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The connection as the editor shows it (status line, `push.status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PushStatus {
    pub connected: bool,
    pub address: Option<String>,
    pub node: Option<u64>,
    /// "leader", "follower", "learner", "candidate" or "non-member" (removed, or not yet joined).
    pub role: Option<String>,
    /// HEAD of the app.
    pub version: Option<u64>,
    pub message: String,
}

/// `push/status`: sent on connect, disconnect and HEAD change.
pub enum StatusNotification {}

impl Notification for StatusNotification {
    type Params = PushStatus;
    const METHOD: &'static str = "push/status";
}

/// `initializationOptions` the server understands.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct InitOptions {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}
