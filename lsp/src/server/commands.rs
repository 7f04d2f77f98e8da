//! The `push.*` commands behind `workspace/executeCommand`: eval (in the session or patched
//! into a module), deploy, rollback, interrupt and status (the post-mortem ones are in
//! `debug.rs`), with their arguments decoded, their
//! results encoded, and an eval's or deploy's error turned into a diagnostic on its file.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use push_protocol::{Op, Reply};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_lsp_server::jsonrpc::Result as RpcResult;
use tower_lsp_server::ls_types::*;

use super::Server;
use crate::error::LspError;
use crate::eval::{self, Place};
use crate::ext::{self, EvalArgs, EvalOutcome};
use crate::link::{APP, REQUEST_TIMEOUT};
use crate::paths::{self, file_path};
use crate::text::{dedent, LineIndex};
use crate::{snippets, toplevel};

fn args<T: DeserializeOwned>(command: &str, arguments: Vec<Value>) -> Result<T, LspError> {
    let v = match arguments.into_iter().next() {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v) => v,
    };
    serde_json::from_value(v).map_err(|e| LspError::Arguments {
        command: command.into(),
        reason: format!("{e} (pass one JSON object as arguments[0]; see lsp/README.md)"),
    })
}

fn to_json<T: serde::Serialize>(value: T) -> RpcResult<Option<Value>> {
    serde_json::to_value(value)
        .map(Some)
        .map_err(|e| LspError::Invalid(format!("cannot encode the result: {e}")).into())
}

impl Server {
    async fn finish_eval(
        &self,
        ran: eval::Ran,
        uri: &Uri,
        range: Range,
        module: Option<String>,
        patched: bool,
    ) -> EvalOutcome {
        let r = ran.result;
        let mut value = r.value;
        if patched {
            // The patch helper returns a message; show it without Python's quotes.
            value = value.map(|v| v.trim_matches('\'').to_string());
        }
        if let Some(t) = &r.truncated {
            value = value.map(|v| format!("{v}  [{t}]"));
        }
        let diagnostic = r.error.as_ref().and_then(|e| {
            let (place, line) = eval::locate(e, !patched)?;
            let (file_uri, line0) = match place {
                Place::Evaluated => (uri.clone(), range.start.line + line.saturating_sub(1)),
                Place::AppFile(rel) => {
                    let base = match &module {
                        Some(_) => self.module_of(uri).ok()?.0,
                        None => {
                            file_path(uri).map(|p| paths::app_root(&p, self.root().as_deref()))?
                        }
                    };
                    (Uri::from_file_path(base.join(rel))?, line.saturating_sub(1))
                }
            };
            let text = self.text(&file_uri).ok();
            let width = text
                .as_deref()
                .map(|t| {
                    LineIndex::new(t)
                        .lines_range(line0 as usize, line0 as usize)
                        .end
                        .character
                })
                .unwrap_or(1000);
            Some((
                file_uri,
                Diagnostic {
                    range: Range::new(Position::new(line0, 0), Position::new(line0, width)),
                    severity: Some(DiagnosticSeverity::ERROR),
                    source: Some("push".into()),
                    message: format!("{}: {}\n\n{}", e.type_name, e.message, e.formatted),
                    ..Default::default()
                },
            ))
        });
        self.set_eval_diagnostic(diagnostic).await;
        EvalOutcome {
            ok: r.error.is_none(),
            value,
            stdout: ran.stdout,
            stderr: ran.stderr,
            error: r
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.type_name, e.message)),
            traceback: r.error.map(|e| e.formatted),
            range,
            module,
            node: r.node,
            micros: r.micros,
        }
    }

    async fn cmd_eval(&self, a: EvalArgs) -> Result<EvalOutcome, LspError> {
        let (code, range) = if let Some(code) = a.code {
            let at = a.range.or(a.position.map(|p| Range::new(p, p)));
            (code, at.unwrap_or_default())
        } else {
            let text = self.text(&a.uri)?;
            let idx = LineIndex::new(&text);
            if let Some(range) = a.range {
                (dedent(idx.slice(range)), range)
            } else if let Some(pos) = a.position {
                let s = toplevel::statement_at(&text, pos.line as usize).ok_or_else(|| {
                    LspError::Invalid("there is no statement to evaluate in this file".into())
                })?;
                let range = idx.lines_range(s.start, s.end);
                (idx.slice(range).to_string(), range)
            } else {
                let end = idx.position(text.len());
                (text.to_string(), Range::new(Position::new(0, 0), end))
            }
        };
        // A file of the app: its names are the running module's, as under the REPL's `:in`. A
        // definition evaluated there replaces the running one on every worker of the node (a
        // hot-patch); an expression only runs, once. A module the node has not loaded (a new
        // file) falls back to the session. The session is passed either way, so that
        // `push.interrupt` reaches the eval.
        let module = self.app_module(&a.uri);
        let lost = |ran: &eval::Ran| {
            ran.result.error.as_ref().is_some_and(|e| {
                e.type_name == "LookupError" && e.message.contains("does not exist on this node")
            })
        };
        let unloaded = |ran: &eval::Ran| {
            ran.result.error.as_ref().is_some_and(|e| {
                e.type_name == "LookupError" && e.message.contains("is loaded on this node")
            })
        };
        let mut session = self.link.session().await?;
        let mut ran = self
            .eval_watched(session, code.clone(), module.clone())
            .await?;
        if lost(&ran) {
            // The node restarted and forgot the session: open a new one and run again.
            self.link.forget_session();
            session = self.link.session().await?;
            ran = self
                .eval_watched(session, code.clone(), module.clone())
                .await?;
        }
        let module = match module {
            Some(_) if unloaded(&ran) => {
                ran = self.eval_watched(session, code, None).await?;
                None
            }
            other => other,
        };
        Ok(self.finish_eval(ran, &a.uri, range, module, false).await)
    }

    /// An eval in the LSP's session. The node's notice that it has not stopped after an
    /// interrupt is shown at once (the eval's own answer comes only when it ends) and arms the
    /// next `push.interrupt`, which restarts its worker.
    async fn eval_watched(
        &self,
        session: u64,
        code: String,
        module: Option<String>,
    ) -> Result<eval::Ran, LspError> {
        let on_stuck = |notice: &str| {
            self.stuck_eval.store(true, Ordering::Relaxed);
            let client = self.client.clone();
            let shown = format!("Push: {} (run push.interrupt again)", notice.trim_end());
            tokio::spawn(async move { client.show_message(MessageType::WARNING, shown).await });
        };
        let ran = eval::run_watched(&self.link, Some(session), code, module, &on_stuck).await;
        self.stuck_eval.store(false, Ordering::Relaxed);
        ran
    }

    async fn cmd_eval_in_module(&self, a: EvalArgs) -> Result<EvalOutcome, LspError> {
        let (_, module) = self.module_of(&a.uri)?;
        let text = self.text(&a.uri)?;
        let idx = LineIndex::new(&text);
        let (source, range) = if let Some(code) = a.code {
            let at = a.range.or(a.position.map(|p| Range::new(p, p)));
            (code, at.unwrap_or_default())
        } else if let Some(range) = a.range {
            (dedent(idx.slice(range)), range)
        } else {
            let line = a.position.map_or(0, |p| p.line as usize);
            let s = toplevel::statement_at(&text, line).ok_or_else(|| {
                LspError::Invalid("there is no definition to patch in this file".into())
            })?;
            let range = idx.lines_range(s.start, s.end);
            (idx.slice(range).to_string(), range)
        };
        let code = snippets::patch(&source, range.start.line + 1);
        let ran = eval::run(&self.link, None, code, Some(module.clone())).await?;
        Ok(self
            .finish_eval(ran, &a.uri, range, Some(module), true)
            .await)
    }

    fn default_app_root(&self) -> Result<PathBuf, LspError> {
        self.root().ok_or_else(|| {
            LspError::Invalid(
                "no workspace folder: pass {\"root\": DIR} or open the app's folder as the workspace"
                    .into(),
            )
        })
    }

    async fn cmd_deploy(&self, a: ext::DeployArgs) -> Result<ext::Deployed, LspError> {
        let root = match a.root {
            Some(r) => PathBuf::from(r),
            None => self.default_app_root()?,
        };
        let (addr, token) = self.link.target()?;
        match (self.hooks.deploy)(addr, token, root.clone()).await {
            Ok(summary) => {
                let version = match self
                    .link
                    .call(Op::Versions { app: APP.into() }, REQUEST_TIMEOUT)
                    .await?
                {
                    Reply::Versions { head: Some(v), .. } => v,
                    other => return Err(LspError::Unexpected(format!("{other:?}"))),
                };
                self.link.nudge();
                Ok(ext::Deployed {
                    ok: true,
                    version,
                    summary,
                })
            }
            Err(e) => {
                self.set_eval_diagnostic(deploy_diagnostic(&e.message, &root))
                    .await;
                Err(LspError::Deploy(e))
            }
        }
    }

    async fn cmd_rollback(&self, a: ext::RollbackArgs) -> Result<ext::RolledBack, LspError> {
        match self
            .link
            .call(
                Op::Activate {
                    app: APP.into(),
                    version: a.version,
                },
                REQUEST_TIMEOUT,
            )
            .await?
        {
            Reply::Activated { to, .. } => {
                self.link.nudge();
                Ok(ext::RolledBack {
                    ok: true,
                    version: to,
                })
            }
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }

    async fn cmd_interrupt(&self) -> Result<ext::Interrupted, LspError> {
        let Some(session) = self.link.current_session() else {
            return Ok(ext::Interrupted {
                ok: false,
                running: false,
                restarted: false,
                message: None,
            });
        };
        // After the node's notice that the eval has not stopped, this interrupt is the one
        // that restarts its worker (the node decides; this only says so).
        let stuck = self.stuck_eval.swap(false, Ordering::Relaxed);
        match self
            .link
            .call(Op::Interrupt { session }, REQUEST_TIMEOUT)
            .await?
        {
            Reply::Interrupted { running } => Ok(ext::Interrupted {
                ok: running,
                running,
                restarted: running && stuck,
                message: (running && stuck).then(|| {
                    "the eval had not stopped after the interrupt: its python worker is restarting, and the names this session defined before are lost".to_string()
                }),
            }),
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }

    pub(super) async fn execute(
        &self,
        command: &str,
        arguments: Vec<Value>,
    ) -> RpcResult<Option<Value>> {
        match command {
            ext::EVAL => to_json(self.cmd_eval(args(command, arguments)?).await?),
            ext::EVAL_IN_MODULE => {
                to_json(self.cmd_eval_in_module(args(command, arguments)?).await?)
            }
            ext::DEPLOY => to_json(self.cmd_deploy(args(command, arguments)?).await?),
            ext::ROLLBACK => to_json(self.cmd_rollback(args(command, arguments)?).await?),
            ext::INTERRUPT => to_json(self.cmd_interrupt().await?),
            ext::STATUS => to_json(self.link.status()),
            ext::ERRORS => to_json(self.cmd_errors().await?),
            ext::PM_OPEN => to_json(self.cmd_pm_open(args(command, arguments)?).await?),
            ext::PM_LOCALS => to_json(self.cmd_pm_locals(args(command, arguments)?).await?),
            ext::PM_EVAL => to_json(self.cmd_pm_eval(args(command, arguments)?).await?),
            ext::PM_REPLAY => to_json(self.cmd_pm_replay(args(command, arguments)?).await?),
            other => Err(LspError::UnknownCommand(other.into()).into()),
        }
    }
}

/// A failed deploy's "APP@vN/PATH, line L" as a diagnostic on that file.
fn deploy_diagnostic(message: &str, root: &Path) -> Option<(Uri, Diagnostic)> {
    let (before, after) = message.split_once(", line ")?;
    let file = before.rsplit(' ').next()?;
    let rel = eval::app_path(file)?;
    let line: u32 = after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let uri = Uri::from_file_path(root.join(rel))?;
    let line0 = line.saturating_sub(1);
    Some((
        uri,
        Diagnostic {
            range: Range::new(Position::new(line0, 0), Position::new(line0, 1000)),
            severity: Some(DiagnosticSeverity::ERROR),
            source: Some("push deploy".into()),
            message: message.to_string(),
            ..Default::default()
        },
    ))
}
