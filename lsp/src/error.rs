//! The language server's errors, and how each becomes a JSON-RPC error an editor can show.

use push_protocol::ClientError;
use tower_lsp_server::jsonrpc;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LspError {
    /// No node is connected right now (the link keeps retrying in the background).
    #[error("not connected to a Push node ({0}); retrying in the background")]
    Unreachable(String),
    #[error("the node at {addr} did not answer within {millis} ms")]
    Timeout { addr: String, millis: u64 },
    #[error("{0}")]
    Node(#[from] ClientError),
    #[error("the node answered {0}, which this server did not expect; are push and the node the same version?")]
    Unexpected(String),
    #[error("bad arguments for {command}: {reason}")]
    Arguments { command: String, reason: String },
    #[error("unknown command {0:?}; the server knows push.eval, push.evalInModule, push.deploy, push.rollback, push.interrupt, push.status, push.errors, push.pm.open, push.pm.locals, push.pm.eval and push.pm.replay")]
    UnknownCommand(String),
    #[error("{0} is not open in the editor and cannot be read: {1}")]
    NoDocument(String, String),
    #[error("deploy failed: {0}\nFix it and run push.deploy again; HEAD and the running app are unchanged.")]
    Deploy(#[source] DeployError),
    #[error("{0}")]
    Invalid(String),
}

/// Why a deploy through the host program failed, in the host's words (they name the file and
/// line when the app failed to load, which the server turns into a diagnostic).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeployError {
    pub message: String,
}

/// One address the link could not connect to.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("{0}")]
    Failed(#[from] ClientError),
    #[error("connecting to {addr} timed out after {millis} ms")]
    TimedOut { addr: String, millis: u64 },
}

/// Why the link has no connection to a node.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Where to connect could not be worked out (said to the user as the host found it).
    #[error("{0}")]
    Targets(String),
    #[error("no cluster token: set \"token\" in initializationOptions or pass --token-file")]
    NoToken,
    #[error("no node address configured: set \"address\" in initializationOptions or pass --to HOST:PORT")]
    NoAddress,
    #[error("cannot reach a Push node: {}; retrying", join(.0))]
    Unreachable(Vec<AttemptError>),
}

fn join(errors: &[AttemptError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<LspError> for jsonrpc::Error {
    fn from(e: LspError) -> jsonrpc::Error {
        let code = match e {
            LspError::Arguments { .. } | LspError::UnknownCommand(_) => {
                jsonrpc::ErrorCode::InvalidParams
            }
            // LSP's RequestFailed: the request was valid but the server could not do it.
            _ => jsonrpc::ErrorCode::ServerError(-32803),
        };
        jsonrpc::Error {
            code,
            message: e.to_string().into(),
            data: None,
        }
    }
}
