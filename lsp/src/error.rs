//! The language server's errors, and how each becomes a JSON-RPC error an editor can show.

use push_protocol::ClientError;
use tower_lsp::jsonrpc;

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
    #[error("unknown command {0:?}; the server knows push.eval, push.evalInModule, push.deploy, push.rollback, push.interrupt and push.status")]
    UnknownCommand(String),
    #[error("{0} is not open in the editor and cannot be read: {1}")]
    NoDocument(String, String),
    #[error("{0}")]
    Deploy(String),
    #[error("{0}")]
    Invalid(String),
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
