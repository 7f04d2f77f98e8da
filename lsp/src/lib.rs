//! push-lsp: a language server on stdio that bridges an editor to a live Push node.
//!
//! Layout:
//! - [`server`]: the `LanguageServer` — completion, hover, code lenses, diagnostics and the
//!   `push.*` commands, converting LSP (UTF-16 positions) to protocol calls.
//! - [`ext`]: Push's extensions to LSP: command names and arguments, results, `push/status`.
//! - [`link`]: the connection to a node — background reconnects, status polling, the session.
//! - [`eval`]: one streamed eval collected; tracebacks located in files.
//! - [`snippets`]: Python the server sends on the user's behalf (syntax check, hot patch).
//! - [`toplevel`]: top-level statements and defs of a Python file, from indentation.
//! - [`text`]: line index and position conversions, dedent, the name under the cursor.
//! - [`paths`]: app roots and module names.
//! - [`error`]: [`LspError`] and its JSON-RPC form.
//!
//! The crate depends on push-protocol only: deploying and finding the node come through
//! [`Hooks`] that the `push` binary provides (they need the code store's file rules and the
//! `.push/` files, which live in the node crate).

pub mod error;
pub mod eval;
pub mod ext;
pub mod link;
pub mod paths;
pub mod server;
pub mod snippets;
pub mod text;
pub mod toplevel;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

pub use error::{DeployError, LspError};
pub use link::Targets;

/// Finds where to connect for a workspace root (flags, environment, `.push/` upwards).
pub type ResolveFn = dyn Fn(Option<&Path>) -> Targets + Send + Sync;

/// A deploy in progress: the summary line, or what failed.
pub type DeployFuture = Pin<Box<dyn Future<Output = Result<String, DeployError>> + Send>>;

/// Deploys directory `dir` through the node at `addr` with `token`.
pub type DeployFn = dyn Fn(String, String, PathBuf) -> DeployFuture + Send + Sync;

/// Work the server delegates to its host program (the `push` binary).
pub struct Hooks {
    /// Connection settings below the editor's `initializationOptions`.
    pub resolve: Box<ResolveFn>,
    /// Deploy a directory: `(addr, token, dir)`.
    pub deploy: Box<DeployFn>,
}

/// Requests handled at once. Evals hold a slot while their code runs; a high limit keeps
/// `push.interrupt`, completion and hover answering while several evals are running.
const CONCURRENCY: usize = 32;

/// Serves LSP on `input`/`output` until the editor exits.
pub async fn serve<I, O>(input: I, output: O, hooks: Hooks)
where
    I: tokio::io::AsyncRead + Unpin,
    O: tokio::io::AsyncWrite,
{
    let hooks = Arc::new(hooks);
    let (statuses_tx, statuses_rx) = tokio::sync::mpsc::unbounded_channel();
    let link = Arc::new(link::Link::new(statuses_tx));
    let connector = tokio::spawn(link.clone().run());
    let (service, socket) = tower_lsp_server::LspService::new(|client| {
        tokio::spawn(server::forward_status(client.clone(), statuses_rx));
        server::Server::new(client, link, hooks)
    });
    tower_lsp_server::Server::new(input, output, socket)
        .concurrency_level(CONCURRENCY)
        .serve(service)
        .await;
    connector.abort();
}

/// Serves LSP on stdin/stdout.
pub async fn run(hooks: Hooks) {
    serve(tokio::io::stdin(), tokio::io::stdout(), hooks).await;
}
