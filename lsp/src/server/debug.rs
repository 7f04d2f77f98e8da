//! The post-mortem commands (`push.errors`, `push.pm.*`): list the cluster's kept failures,
//! open one, read a frame's locals, evaluate in a frame and replay, all through the same
//! `Op::Debug` the REPL's `:errors` and `:pm` use.

use push_protocol::debug::{DebugAction, DebugReply};
use push_protocol::{Op, Reply};
use serde::{Deserialize, Serialize};

use super::Server;
use crate::error::LspError;
use crate::link::REQUEST_TIMEOUT;

/// Arguments of `push.pm.open` and `push.pm.replay`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FailureArgs {
    pub id: String,
}

/// Arguments of `push.pm.locals` (and `push.pm.eval`, with `code`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FrameArgs {
    pub id: String,
    #[serde(default)]
    pub frame: u32,
    #[serde(default)]
    pub code: Option<String>,
}

impl Server {
    async fn debug(&self, action: DebugAction) -> Result<DebugReply, LspError> {
        super::failures::call(&self.link, action).await
    }

    /// `push.errors`: `{rows, missing}` (rows newest first; missing: nodes not asked, and
    /// why). The open files' failure diagnostics are refreshed from the same rows.
    pub(super) async fn cmd_errors(&self) -> Result<serde_json::Value, LspError> {
        match self.debug(DebugAction::Errors).await? {
            DebugReply::Errors { rows, missing } => {
                if let Err(e) = self.failures.refresh(Some(rows.clone())).await {
                    tracing::debug!("live failures not refreshed: {e}");
                }
                Ok(serde_json::json!({
                "rows": rows,
                "missing": missing
                    .into_iter()
                    .map(|(node, why)| serde_json::json!({"node": node, "why": why}))
                    .collect::<Vec<_>>(),
                }))
            }
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }

    /// `push.pm.open`: the failure's row, request, traceback and frames.
    pub(super) async fn cmd_pm_open(&self, a: FailureArgs) -> Result<serde_json::Value, LspError> {
        match self.debug(DebugAction::Open { id: a.id }).await? {
            DebugReply::Opened(view) => {
                Ok(serde_json::to_value(*view).map_err(|e| LspError::Unexpected(e.to_string()))?)
            }
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }

    /// `push.pm.locals`: `[{name, repr}]` in the frame's order.
    pub(super) async fn cmd_pm_locals(&self, a: FrameArgs) -> Result<serde_json::Value, LspError> {
        let action = DebugAction::Locals {
            id: a.id,
            frame: a.frame,
        };
        match self.debug(action).await? {
            DebugReply::Locals(locals) => Ok(serde_json::Value::Array(
                locals
                    .into_iter()
                    .map(|(name, repr)| serde_json::json!({"name": name, "repr": repr}))
                    .collect(),
            )),
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }

    /// `push.pm.eval`: `{ok, value, type, error, truncated, node, micros}`.
    pub(super) async fn cmd_pm_eval(&self, a: FrameArgs) -> Result<serde_json::Value, LspError> {
        let Some(code) = a.code else {
            return Err(LspError::Arguments {
                command: "push.pm.eval".into(),
                reason: "give \"code\": the expression or statements to run in the frame".into(),
            });
        };
        let op = Op::Debug {
            action: DebugAction::Eval {
                id: a.id,
                frame: a.frame,
                code,
            },
            here: false,
            scope: vec![],
        };
        let result = match self.link.call(op, REQUEST_TIMEOUT).await? {
            Reply::Evaluated(r) => *r,
            Reply::Debug(DebugReply::Evaluated(r)) => *r,
            other => return Err(LspError::Unexpected(format!("{other:?}"))),
        };
        Ok(serde_json::json!({
            "ok": result.error.is_none(),
            "value": result.value,
            "type": result.type_name,
            "error": result.error.as_ref().map(|e| format!("{}: {}", e.type_name, e.message)),
            "truncated": result.truncated,
            "node": result.node,
            "micros": result.micros,
        }))
    }

    /// `push.pm.replay`: `{ok, summary, failure}` (failure: the new id when it failed again).
    pub(super) async fn cmd_pm_replay(
        &self,
        a: FailureArgs,
    ) -> Result<serde_json::Value, LspError> {
        match self.debug(DebugAction::Replay { id: a.id }).await? {
            DebugReply::Replayed {
                ok,
                summary,
                failure,
            } => Ok(serde_json::json!({"ok": ok, "summary": summary, "failure": failure})),
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_arguments_default_to_the_failing_frame() {
        let a: FrameArgs = serde_json::from_value(serde_json::json!({"id": "1.1.1.1"})).unwrap();
        assert_eq!(a.id, "1.1.1.1");
        assert_eq!(a.frame, 0);
        assert_eq!(a.code, None);
        let a: FrameArgs =
            serde_json::from_value(serde_json::json!({"id": "2.1.3.4", "frame": 2, "code": "x"}))
                .unwrap();
        assert_eq!((a.frame, a.code.as_deref()), (2, Some("x")));
    }

    #[test]
    fn the_post_mortem_commands_are_advertised() {
        for name in [
            "push.errors",
            "push.pm.open",
            "push.pm.locals",
            "push.pm.eval",
            "push.pm.replay",
        ] {
            assert!(
                crate::ext::COMMANDS.contains(&name),
                "{name} not advertised"
            );
        }
    }
}
