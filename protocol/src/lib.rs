//! push-protocol: the bytes that travel between Push processes.
//!
//! Every Push process — node, CLI, REPL, language server — speaks this one protocol over one
//! TCP address per node. The crate is a leaf: it knows nothing of Raft, Python or the state
//! machine, so every front end can depend on it without depending on the node.
//!
//! Layout:
//! - [`frame`]: length-prefixed, size-capped frames tagged by kind; incomplete input is not an
//!   error, a truncated or oversized one is.
//! - [`codec`]: the binary encoding of the current format (postcard) used for payloads.
//! - [`format`]: format versions, the codec of each, the frozen handshake layout.
//! - [`value`]: [`Value`], the plain data that replicated structures hold.
//! - [`message`]: handshake, request and reply enums.
//! - [`realm`]: each app's namespace of kv maps, queues and timeseries.
//! - [`debug`]: post-mortem of live failures and call tracing (`Op::Debug`).
//! - [`records`]: the data requests and replies carry (status, reports, results, entries).
//! - [`client`]: the async client that multiplexes requests over one connection.
//! - [`users`]: roles, users as listed, who a connection is, the shape of a user secret.
//! - [`access`]: the role each request needs, and which requests only read.
//! - [`tls`]: optional TLS (rustls) for every connection, and the stream type they share.

pub mod access;
pub mod client;
pub mod codec;
pub mod debug;
pub mod format;
pub mod frame;
pub mod message;
pub mod realm;
pub mod records;
pub mod tls;
pub mod users;
pub mod value;

pub use client::{Client, ClientError};
pub use debug::{DebugAction, DebugReply, FailureRow, FailureView, FrameInfo};
pub use frame::{FrameError, Kind};
pub use message::*;
pub use records::*;
pub use serde_bytes::ByteBuf;
pub use users::{Identity, UserInfo, UserRole, UserSecret};
pub use value::Value;

pub use format::{FORMAT_VERSION, MIN_FORMAT_VERSION};

/// The version of the Push release this crate belongs to.
pub const PUSH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How the node's notice that an eval has not stopped after an interrupt begins (written to
/// the eval's stderr while it still runs): a client spots it to say that a second interrupt
/// restarts the worker.
pub const EVAL_STUCK_NOTICE: &str = "this eval has not stopped";

/// The app a request means when it names none (`push deploy`, the HTTP front, `push tail`).
pub const DEFAULT_APP: &str = "main";

/// Most bytes one `PutBlobs` request may carry; a node refuses more, and clients batch below.
pub const MAX_BLOB_BATCH: usize = 4 << 20;
