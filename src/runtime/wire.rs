//! The messages between a node and its Python worker processes, and their framing.
//!
//! A worker is a child process of its node (the same `push` executable, `push worker`),
//! connected by a Unix socket pair. Both directions carry push-protocol frames
//! (`[u32 len][u8 kind][payload]`) with a postcard payload: the node sends [`ToWorker`]
//! (kind `Request`), the worker sends [`FromWorker`] (kind `Response`). Jobs flow from the node
//! to the worker (run a handler, an eval, load a version); calls flow the other way (the
//! worker's `push.kv` and friends are [`Call`]s the node answers like a client's request).
//!
//! These types never leave one machine or one release: the node starts its workers from
//! its own executable (`/proc/self/exe`), so both ends are always the same build and the
//! messages are not part of the versioned formats.

use std::collections::{BTreeMap, HashMap};

use push_protocol::frame::{self, Kind};
use push_protocol::{
    ByteBuf, ErrorBody, EvalResult, Inspection, Member, NodeStatus, Op, Outcome, RunFunc, Stream,
    TsPoint, Value,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

/// Largest frame either end accepts (a version's files travel in one).
pub const MAX_FRAME: usize = frame::MAX_PEER_FRAME;

/// An HTTP request for a handler.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpRequest {
    pub app: String,
    pub pinned: Option<u64>,
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The query as sent (WSGI's `QUERY_STRING`, ASGI's `query_string`).
    pub query_string: String,
    pub headers: Vec<(String, String)>,
    /// The body, or its first part when `more` is set.
    pub body: ByteBuf,
    /// The rest of the body follows as [`ToWorker::Body`] frames.
    pub more: bool,
    /// The client's address (`ip:port`), for WSGI's `REMOTE_ADDR` and ASGI's `client`.
    pub client: String,
    /// The address the request came in on (`ip:port`): `SERVER_NAME`/`SERVER_PORT`.
    pub server: String,
}

/// A handler's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: ByteBuf,
    pub version: Option<u64>,
    /// The traceback when the handler raised (logged by the node, never sent).
    pub error: Option<String>,
    /// The answer went out as [`FromWorker::HttpHead`] and [`FromWorker::HttpChunk`] frames
    /// (a streamed answer, or a WSGI/ASGI app's): status, headers and body here are unused.
    pub streamed: bool,
}

/// Work the node hands a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Job {
    Load {
        app: String,
        number: u64,
        files: BTreeMap<String, String>,
        entry: String,
    },
    Gate {
        app: String,
        number: u64,
        files: BTreeMap<String, String>,
        entry: String,
    },
    Http(HttpRequest),
    /// An eval; its prints stream back as [`FromWorker::Output`] frames.
    Eval {
        session: Option<u64>,
        code: String,
        module: Option<String>,
        node: u64,
    },
    Interrupt {
        session: u64,
    },
    OpenSession,
    CloseSession {
        session: u64,
    },
    IsComplete {
        code: String,
    },
    Complete {
        session: Option<u64>,
        code: String,
        cursor: usize,
        module: Option<String>,
    },
    Inspect {
        session: Option<u64>,
        expr: String,
    },
    HeadTasks {
        app: String,
    },
    Reconcile {
        app: String,
        wanted: Vec<(String, u64)>,
    },
    Fire {
        app: String,
        name: String,
    },
    Reports,
    Lines {
        app: String,
        unit: String,
        after: u64,
    },
    StopTasks,
    RunLambda {
        func: RunFunc,
        args: Vec<Value>,
    },
    /// A post-mortem request, JSON for `postmortem.request`; answered with `Done::Json`.
    Debug {
        request: String,
    },
    /// An evaluation in frame `frame` of kept failure `seq`; output as for `Eval`.
    EvalInFrame {
        seq: u64,
        frame: u32,
        code: String,
        scope: Vec<String>,
        node: u64,
    },
    /// Trace calls of `target`; each event is an `Output` frame, the end `Done::Json`.
    Trace {
        target: String,
        max: u32,
        secs: u32,
        scope: Vec<String>,
        label: String,
    },
}

/// A worker's answer to a [`Job`]. `Failed` carries a runtime failure's text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Done {
    Failed(String),
    /// A gate's or load's refusal (None: it went well).
    Refusal(Option<String>),
    Http(HttpResponse),
    /// An evaluation's result, and what of it to replay on the app's other workers (an
    /// evaluation in a module that defined something).
    Eval(EvalResult, Option<String>),
    Bool(bool),
    Session(u64),
    Completions(usize, Vec<String>),
    Inspection(Inspection),
    /// JSON text (task specs, unit reports), parsed by the node.
    Json(Option<String>),
    Lines(Vec<(u64, String)>),
    Unit,
    Lambda(Result<Value, String>),
}

/// What a worker asks its node: the runtime's [`super::cluster::Cluster`] interface.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Call {
    Op(Op),
    Status,
    Members,
    VersionFiles {
        app: String,
        number: u64,
    },
    TsCursor {
        series: String,
        unit: String,
    },
    TsAfter {
        series: String,
        partition: u32,
        after: u64,
        limit: usize,
        wait_ms: u64,
    },
}

/// The node's answer to a [`Call`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Answer {
    Outcome(Outcome),
    Status(Box<NodeStatus>),
    Members(Vec<Member>),
    Files(Option<BTreeMap<String, ByteBuf>>),
    Cursor(u64),
    Points(Vec<TsPoint>),
    /// The node could not answer (the worker's app code gets it as `push.PushError`).
    Error(ErrorBody),
}

/// Node → worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToWorker {
    Job {
        id: u64,
        job: Job,
    },
    Answer {
        id: u64,
        answer: Answer,
    },
    /// More of HTTP job `id`'s request body; `None` when it is complete.
    Body {
        id: u64,
        chunk: Option<ByteBuf>,
    },
    /// HTTP job `id`'s client went away (or sent too large a body).
    Disconnect {
        id: u64,
    },
    /// The node handed `bytes` more of HTTP job `id`'s streamed answer to its client's
    /// socket: the worker may send that much more (backpressure, see `exchange::WINDOW`).
    Sent {
        id: u64,
        bytes: u64,
    },
}

/// Worker → node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// First frame: the worker is ready.
    Hello {
        pid: u32,
        python: String,
        /// `sys.prefix`: where the node finds the same Python's executable (to install an
        /// app's dependencies with its pip).
        prefix: String,
    },
    Done {
        id: u64,
        done: Done,
    },
    Output {
        id: u64,
        stream: Stream,
        text: String,
    },
    Call {
        id: u64,
        call: Call,
    },
    /// One app `logging` record, for the node's log (and `push logs`).
    Log(AppLog),
    /// The status and headers of HTTP job `id`'s streamed answer.
    HttpHead {
        id: u64,
        status: u16,
        headers: Vec<(String, String)>,
        version: Option<u64>,
    },
    /// The next piece of HTTP job `id`'s streamed answer, for the client at once.
    HttpChunk {
        id: u64,
        data: ByteBuf,
    },
}

/// An app `logging` record as `push logs` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppLog {
    pub levelno: i64,
    pub logger: String,
    pub message: String,
    pub app: Option<String>,
    pub version: Option<u64>,
    pub source: Option<String>,
}

/// Why a message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("undecodable worker message: {0}")]
    Codec(String),
}

/// Encodes one message as a whole frame.
pub fn encode<T: Serialize>(kind: Kind, message: &T) -> Result<Vec<u8>, WireError> {
    let body =
        push_protocol::codec::encode(message).map_err(|e| WireError::Codec(e.to_string()))?;
    Ok(frame::encode_frame(kind, &[&body]))
}

/// Reads one message; `Ok(None)` when the other end closed cleanly.
pub async fn read<T: serde::de::DeserializeOwned, R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<T>, WireError> {
    match frame::read_frame(reader, MAX_FRAME).await? {
        None => Ok(None),
        Some(f) => push_protocol::codec::decode(&f.payload)
            .map(Some)
            .map_err(|e| WireError::Codec(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_through_frames() {
        let message = FromWorker::Call {
            id: 7,
            call: Call::TsAfter {
                series: "temps".into(),
                partition: 2,
                after: 9,
                limit: 100,
                wait_ms: 50,
            },
        };
        let bytes = encode(Kind::Response, &message).unwrap();
        let mut reader = &bytes[..];
        let back: FromWorker = read(&mut reader).await.unwrap().unwrap();
        assert!(matches!(
            back,
            FromWorker::Call {
                id: 7,
                call: Call::TsAfter { partition: 2, .. }
            }
        ));
        let none: Option<FromWorker> = read(&mut reader).await.unwrap();
        assert!(none.is_none());
    }
}
