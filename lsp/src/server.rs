//! The `LanguageServer` trait methods (initialize, document sync, completion, hover, code
//! lenses, the syntax check) and the state they share; the `push.*` commands that
//! `workspace/executeCommand` runs live in [`commands`]. Open documents are kept as full text
//! (full sync); every request reads what it needs from them and the node, so handlers share no
//! state beyond documents, diagnostics and the link.

mod commands;
mod debug;
mod failures;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_protocol::{Op, Reply};
use serde_json::Value;
use tower_lsp_server::jsonrpc::Result as RpcResult;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::error::LspError;
use crate::eval;
use crate::ext::{self, InitOptions, PushStatus};
use crate::link::{Link, Targets, REQUEST_TIMEOUT};
use crate::paths::file_path;
use crate::text::{dotted_name_at, LineIndex};
use crate::{paths, snippets, toplevel, Hooks};

/// Pause after the last keystroke before the syntax check runs.
const CHECK_DELAY: Duration = Duration::from_millis(150);

struct Doc {
    version: i32,
    text: Arc<String>,
}

/// Diagnostics of one file, by where they came from.
#[derive(Default)]
struct FileDiagnostics {
    syntax: Vec<Diagnostic>,
    eval: Vec<Diagnostic>,
    /// The cluster's kept failures whose innermost app frame is in this file.
    failures: Vec<Diagnostic>,
}

/// Everything a file shows.
fn all_diagnostics(d: &FileDiagnostics) -> Vec<Diagnostic> {
    d.syntax
        .iter()
        .chain(&d.eval)
        .chain(&d.failures)
        .cloned()
        .collect()
}

#[derive(Default)]
struct Workspace {
    root: Option<PathBuf>,
    options: InitOptions,
}

/// One per editor connection.
pub struct Server {
    client: Client,
    link: Arc<Link>,
    hooks: Arc<Hooks>,
    docs: Arc<Mutex<HashMap<Uri, Doc>>>,
    diagnostics: Arc<Mutex<HashMap<Uri, FileDiagnostics>>>,
    failures: Arc<failures::Watch>,
    workspace: Mutex<Workspace>,
    /// Whether the user was told the node is unreachable (once per disconnection).
    warned: AtomicBool,
    /// The session's running eval has not stopped after an interrupt (the node said so): the
    /// next `push.interrupt` restarts its worker.
    stuck_eval: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    pub fn new(client: Client, link: Arc<Link>, hooks: Arc<Hooks>) -> Server {
        let docs = Arc::new(Mutex::new(HashMap::new()));
        let diagnostics = Arc::new(Mutex::new(HashMap::new()));
        let failures = Arc::new(failures::Watch::new(
            client.clone(),
            link.clone(),
            Arc::clone(&docs),
            Arc::clone(&diagnostics),
        ));
        Server {
            client,
            link,
            hooks,
            docs,
            diagnostics,
            failures,
            workspace: Mutex::new(Workspace::default()),
            warned: AtomicBool::new(false),
            stuck_eval: AtomicBool::new(false),
        }
    }

    fn root(&self) -> Option<PathBuf> {
        lock(&self.workspace).root.clone()
    }

    /// The text of `uri`: the open document, else the file on disk.
    fn text(&self, uri: &Uri) -> Result<Arc<String>, LspError> {
        if let Some(doc) = lock(&self.docs).get(uri) {
            return Ok(doc.text.clone());
        }
        let path = file_path(uri).ok_or_else(|| {
            LspError::NoDocument(uri.as_str().to_string(), "not a file URI".into())
        })?;
        std::fs::read_to_string(&path)
            .map(Arc::new)
            .map_err(|e| LspError::NoDocument(uri.as_str().to_string(), e.to_string()))
    }

    /// Called when a request found no node: says so once per disconnection.
    async fn warn_unreachable(&self, e: &LspError) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            self.client
                .show_message(MessageType::WARNING, format!("Push: {e}"))
                .await;
        }
    }

    async fn publish(&self, uri: Uri) {
        let all = {
            let diags = lock(&self.diagnostics);
            diags.get(&uri).map(all_diagnostics).unwrap_or_default()
        };
        self.client.publish_diagnostics(uri, all, None).await;
    }

    /// Replaces the last eval's diagnostics with `found` (None clears them).
    async fn set_eval_diagnostic(&self, found: Option<(Uri, Diagnostic)>) {
        let touched: Vec<Uri> = {
            let mut diags = lock(&self.diagnostics);
            let mut touched: Vec<Uri> = diags
                .iter_mut()
                .filter(|(_, d)| !d.eval.is_empty())
                .map(|(u, d)| {
                    d.eval.clear();
                    u.clone()
                })
                .collect();
            if let Some((uri, diagnostic)) = found {
                diags.entry(uri.clone()).or_default().eval = vec![diagnostic];
                if !touched.contains(&uri) {
                    touched.push(uri);
                }
            }
            touched
        };
        for uri in touched {
            self.publish(uri).await;
        }
    }

    /// Schedules the syntax check of `uri` at `version`, after a short pause.
    fn schedule_check(&self, uri: Uri, version: i32) {
        let docs = self.docs.clone();
        let diagnostics = self.diagnostics.clone();
        let link = self.link.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CHECK_DELAY).await;
            let text = match lock(&docs).get(&uri) {
                Some(doc) if doc.version == version => doc.text.clone(),
                _ => return, // edited again (that edit has its own check) or closed
            };
            let Some(found) = check_syntax(&link, &uri, &text).await else {
                return; // no node: keep what was shown
            };
            let all = {
                let mut diags = lock(&diagnostics);
                // Only publish if the document has not moved on meanwhile.
                if lock(&docs).get(&uri).map(|d| d.version) != Some(version) {
                    return;
                }
                let entry = diags.entry(uri.clone()).or_default();
                entry.syntax = found;
                all_diagnostics(entry)
            };
            client.publish_diagnostics(uri, all, Some(version)).await;
        });
    }

    /// The module a document is on the node when it is a file of the app (under a folder
    /// holding push.ron): editor evals and completions there happen in that module, as the
    /// REPL's `:in MODULE` does; other files keep the scratch session.
    pub(crate) fn app_module(&self, uri: &Uri) -> Option<String> {
        let path = file_path(uri)?;
        let root = paths::app_root(&path, self.root().as_deref());
        if !root.join(paths::MANIFEST).is_file() {
            return None;
        }
        paths::module_name(&path, &root)
    }

    /// The app root and module name of a document.
    fn module_of(&self, uri: &Uri) -> Result<(PathBuf, String), LspError> {
        let path = file_path(uri).ok_or_else(|| {
            LspError::Invalid(format!("{} is not a file; save it first", uri.as_str()))
        })?;
        let root = paths::app_root(&path, self.root().as_deref());
        let module = paths::module_name(&path, &root).ok_or_else(|| {
            LspError::Invalid(format!(
                "{} is not a Python module of the app at {} (module names come from paths under the app root, the folder holding push.ron)",
                path.display(),
                root.display()
            ))
        })?;
        Ok((root, module))
    }

    async fn completions(&self, params: CompletionParams) -> Result<Vec<CompletionItem>, LspError> {
        let uri = params.text_document_position.text_document.uri;
        let pos = params.text_document_position.position;
        let text = self.text(&uri)?;
        let idx = LineIndex::new(&text);
        let offset = idx.offset(pos);
        let prefix = &text[..offset];
        let cursor = prefix.chars().count();
        let session = self.link.session().await?;
        let reply = self
            .link
            .call(
                Op::Complete {
                    session: Some(session),
                    code: prefix.to_string(),
                    cursor,
                    module: self.app_module(&uri),
                },
                REQUEST_TIMEOUT,
            )
            .await?;
        let Reply::Completions { start, items } = reply else {
            return Err(LspError::Unexpected(format!("{reply:?}")));
        };
        let back = cursor.saturating_sub(start.min(cursor));
        let start_byte = match back {
            0 => offset,
            n => prefix.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i),
        };
        let range = Range::new(idx.position(start_byte), pos);
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, label)| CompletionItem {
                sort_text: Some(format!("{i:04}")),
                filter_text: Some(label.clone()),
                text_edit: Some(CompletionTextEdit::Edit(TextEdit::new(
                    range,
                    label.clone(),
                ))),
                label,
                ..Default::default()
            })
            .collect())
    }

    async fn inspect(&self, params: HoverParams) -> Result<Option<Hover>, LspError> {
        let uri = params.text_document_position_params.text_document.uri;
        let pos = params.text_document_position_params.position;
        let text = self.text(&uri)?;
        let idx = LineIndex::new(&text);
        let line = idx.line(pos.line as usize);
        let line_start = idx.offset(Position::new(pos.line, 0));
        let Some(name) = dotted_name_at(line, idx.offset(pos) - line_start) else {
            return Ok(None);
        };
        let session = self.link.session().await?;
        let mut exprs = vec![name.clone()];
        if let Ok((_, module)) = self.module_of(&uri) {
            exprs.push(format!(
                "__import__('sys').modules[{}].{name}",
                crate::text::py_str(&module)
            ));
        }
        for expr in exprs {
            let reply = self
                .link
                .call(
                    Op::Inspect {
                        session: Some(session),
                        expr,
                    },
                    REQUEST_TIMEOUT,
                )
                .await;
            match reply {
                Ok(Reply::Inspected(i)) => {
                    let mut md = format!("```python\n{name}");
                    match &i.signature {
                        Some(sig) => md.push_str(sig),
                        None => md.push_str(&format!(": {}", i.type_name)),
                    }
                    md.push_str("\n```\n");
                    md.push_str(&format!(
                        "`{}` — `{}`\n",
                        i.type_name,
                        i.repr.replace('`', "'")
                    ));
                    if let Some(doc) = &i.doc {
                        md.push_str(&format!("\n{doc}\n"));
                    }
                    if let (Some(file), Some(line)) = (&i.file, i.line) {
                        md.push_str(&format!("\n*{file}:{line}*\n"));
                    }
                    return Ok(Some(Hover {
                        contents: HoverContents::Markup(MarkupContent {
                            kind: MarkupKind::Markdown,
                            value: md,
                        }),
                        range: None,
                    }));
                }
                Ok(_) | Err(LspError::Node(_)) => continue, // not defined there: try the next
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// Runs the node's syntax check on `text`; None when no node could be asked.
async fn check_syntax(link: &Link, uri: &Uri, text: &str) -> Option<Vec<Diagnostic>> {
    let name = file_path(uri)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "<editor>".into());
    let ran = eval::run(link, None, snippets::syntax_check(text, &name), None)
        .await
        .ok()?;
    if ran.result.error.is_some() {
        return None; // the check itself failed (a node problem), not the user's code
    }
    let out = ran.stdout.trim();
    if out.is_empty() {
        return Some(Vec::new());
    }
    let fields: Vec<Value> = serde_json::from_str(out).ok()?;
    let num = |i: usize| fields.get(i).and_then(Value::as_u64).map(|n| n as usize);
    let message = fields
        .get(4)
        .and_then(Value::as_str)
        .unwrap_or("syntax error");
    let idx = LineIndex::new(text);
    let line = num(0).unwrap_or(1).max(1) - 1;
    let col = num(1).unwrap_or(1).max(1) - 1;
    let start = idx.advance_chars(Position::new(line as u32, 0), col);
    let end = match (num(2), num(3)) {
        (Some(l), Some(c)) if (l.max(1) - 1, c.max(1) - 1) > (line, col) => {
            idx.advance_chars(Position::new((l.max(1) - 1) as u32, 0), c.max(1) - 1)
        }
        _ => idx.advance_chars(start, 1),
    };
    let end = if end == start {
        Position::new(start.line, start.character + 1)
    } else {
        end
    };
    Some(vec![Diagnostic {
        range: Range::new(start, end),
        severity: Some(DiagnosticSeverity::ERROR),
        source: Some("push".into()),
        message: format!("SyntaxError: {message}"),
        ..Default::default()
    }])
}

impl LanguageServer for Server {
    async fn initialize(&self, params: InitializeParams) -> RpcResult<InitializeResult> {
        #[allow(deprecated)]
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|f| f.first())
            .and_then(|f| file_path(&f.uri))
            .or_else(|| params.root_uri.as_ref().and_then(file_path))
            .or_else(|| params.root_path.as_ref().map(PathBuf::from));
        let options = params
            .initialization_options
            .and_then(|o| serde_json::from_value::<InitOptions>(o).ok())
            .unwrap_or_default();
        *lock(&self.workspace) = Workspace { root, options };
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "push-lsp".into(),
                version: Some(push_protocol::PUSH_VERSION.into()),
            }),
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::FULL,
                )),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![".".into()]),
                    ..Default::default()
                }),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                code_lens_provider: Some(CodeLensOptions {
                    resolve_provider: Some(false),
                }),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: ext::COMMANDS.iter().map(|c| c.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let (root, options) = {
            let ws = lock(&self.workspace);
            (ws.root.clone(), ws.options.clone())
        };
        let mut targets: Targets = (self.hooks.resolve)(root.as_deref());
        if let Some(addr) = options.address {
            targets.addrs = vec![addr];
            targets.problem = None;
        }
        if let Some(token) = options.token {
            targets.token = Some(token);
        }
        if targets.token.is_some() && !targets.addrs.is_empty() {
            targets.problem = None;
        }
        self.link.set_targets(targets);
        self.failures.start(root);
    }

    async fn shutdown(&self) -> RpcResult<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let d = params.text_document;
        lock(&self.docs).insert(
            d.uri.clone(),
            Doc {
                version: d.version,
                text: Arc::new(d.text),
            },
        );
        self.schedule_check(d.uri, d.version);
        self.failures.nudge();
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let version = params.text_document.version;
        // Full sync: the last change holds the whole text.
        let Some(change) = params.content_changes.into_iter().last() else {
            return;
        };
        {
            let mut docs = lock(&self.docs);
            // Notifications may be handled out of order; never go back to an older text.
            if docs.get(&uri).is_some_and(|d| d.version > version) {
                return;
            }
            docs.insert(
                uri.clone(),
                Doc {
                    version,
                    text: Arc::new(change.text),
                },
            );
        }
        self.schedule_check(uri, version);
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        lock(&self.docs).remove(&uri);
        lock(&self.diagnostics).remove(&uri);
        self.client.publish_diagnostics(uri, Vec::new(), None).await;
    }

    async fn completion(&self, params: CompletionParams) -> RpcResult<Option<CompletionResponse>> {
        match self.completions(params).await {
            Ok(items) => {
                self.warned.store(false, Ordering::Relaxed);
                Ok(Some(CompletionResponse::Array(items)))
            }
            Err(e @ (LspError::Unreachable(_) | LspError::Timeout { .. })) => {
                self.warn_unreachable(&e).await;
                Ok(Some(CompletionResponse::Array(Vec::new())))
            }
            Err(LspError::NoDocument(..)) => Ok(None),
            Err(e) => {
                tracing::debug!("completion failed: {e}");
                Ok(Some(CompletionResponse::Array(Vec::new())))
            }
        }
    }

    async fn hover(&self, params: HoverParams) -> RpcResult<Option<Hover>> {
        match self.inspect(params).await {
            Ok(hover) => Ok(hover),
            Err(e @ (LspError::Unreachable(_) | LspError::Timeout { .. })) => {
                self.warn_unreachable(&e).await;
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    async fn code_lens(&self, params: CodeLensParams) -> RpcResult<Option<Vec<CodeLens>>> {
        let uri = params.text_document.uri;
        let Ok(text) = self.text(&uri) else {
            return Ok(None);
        };
        let lenses = toplevel::definitions(&text)
            .into_iter()
            .flat_map(|s| {
                let position = Position::new(s.start as u32, 0);
                let range = Range::new(position, position);
                let arg = serde_json::json!({ "uri": uri, "position": position });
                [
                    ("▶ eval", ext::EVAL),
                    ("⟳ patch into running module", ext::EVAL_IN_MODULE),
                ]
                .map(|(title, command)| CodeLens {
                    range,
                    command: Some(Command {
                        title: title.into(),
                        command: command.into(),
                        arguments: Some(vec![arg.clone()]),
                    }),
                    data: None,
                })
            })
            .collect();
        Ok(Some(lenses))
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> RpcResult<Option<Value>> {
        self.execute(&params.command, params.arguments).await
    }
}

/// Forwards the link's status changes to the editor as `push/status` notifications.
pub async fn forward_status(
    client: Client,
    mut statuses: tokio::sync::mpsc::UnboundedReceiver<PushStatus>,
) {
    while let Some(status) = statuses.recv().await {
        client
            .send_notification::<ext::StatusNotification>(status)
            .await;
    }
}
