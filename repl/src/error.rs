//! The REPL's errors: why a call to the node or a deploy failed, each saying what to do next.

use std::time::Duration;

use push_protocol::ClientError;

/// Why a call to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("not connected to {addr}; `:reconnect`, or `:use ID` to pick another node")]
    NotConnected { addr: String },
    /// The connection broke: the REPL marks the link dead and names the other nodes.
    #[error("{error}\nthe node is unreachable: `:reconnect`, or `:use ID` to pick another node ({members})")]
    Unreachable { error: ClientError, members: String },
    /// The node answered with an error.
    #[error("{0}")]
    Node(#[from] ClientError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply {0}; are push and the node the same version?")]
    Unexpected(String),
}

/// Why a deploy through the host program failed, in the host's words.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeployError {
    pub message: String,
}
