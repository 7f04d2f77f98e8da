//! Post-mortem of live failures and call tracing (format 4): what `push errors`, the REPL's
//! `:errors`, `:pm`, `:frame`, `:replay`, `:trace` and the editors ask a node, and what it
//! answers. A failure is kept on the worker where it happened; its id names that place.

use serde::{Deserialize, Serialize};

use crate::records::EvalResult;

/// What [`crate::Op::Debug`] asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DebugAction {
    /// The kept failures, newest first.
    Errors,
    /// One failure: origin, traceback and its numbered frames.
    Open { id: String },
    /// The locals of frame `frame` (0 = where it failed), each repr capped.
    Locals { id: String, frame: u32 },
    /// Evaluate `code` in the frame's globals with a copy of its locals (kept per frame, so
    /// names assigned stay for the next evaluation). Answered with `Reply::Evaluated`.
    Eval {
        id: String,
        frame: u32,
        code: String,
    },
    /// The source of the frame's function.
    Source { id: String, frame: u32 },
    /// Run the recorded request (or lambda call) again against the code as it is now.
    Replay { id: String },
    /// Print each call of `target` (`module.function`) as it happens, up to `max` events or
    /// `secs` seconds. Streams `Reply::Output` lines, then `DebugReply::Traced`.
    Trace { target: String, max: u32, secs: u32 },
    /// Stop the traces running on the node(s).
    Untrace,
}

/// One kept failure, as `push errors` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRow {
    /// `NODE.WORKER.START.SEQ`: the node, its python worker (1-based), which start of that
    /// worker, and the failure's number there.
    pub id: String,
    pub node: u64,
    pub worker: u32,
    pub app: String,
    pub version: Option<u64>,
    /// Where it came from: "route GET /x", "wsgi POST /y", "daemon d", "schedule s",
    /// "lambda jobs:f".
    pub origin: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The exception, one line ("ZeroDivisionError: division by zero").
    pub error: String,
    /// The innermost app frame, "file:line".
    pub place: String,
}

/// A frame of a kept failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameInfo {
    /// 0 is where the exception was raised; higher numbers are its callers.
    pub index: u32,
    pub file: String,
    pub line: u32,
    pub function: String,
    /// The source line.
    pub code: String,
}

/// One failure opened (`:pm ID`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureView {
    pub row: FailureRow,
    /// The recorded request or call, as text (method, path, query, headers, body capped).
    pub request: Option<String>,
    pub traceback: String,
    pub frames: Vec<FrameInfo>,
    /// Whether `:replay` can run it again.
    pub replayable: bool,
}

/// The answer to a [`DebugAction`] (an `Eval` is answered with `Reply::Evaluated`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DebugReply {
    /// Newest first; `missing` names the nodes that could not be asked, and why.
    Errors {
        rows: Vec<FailureRow>,
        missing: Vec<(u64, String)>,
    },
    Opened(Box<FailureView>),
    /// (name, repr capped) in the frame's order.
    Locals(Vec<(String, String)>),
    Source {
        file: String,
        line: u32,
        text: String,
    },
    /// A replay's outcome: `ok` when it ran without an exception; `summary` says what it
    /// answered; `failure` is the id of the new failure it left when it failed again.
    Replayed {
        ok: bool,
        summary: String,
        failure: Option<String>,
    },
    /// A trace ended: how many events it printed, and why it stopped. `lines` repeats the
    /// events for a node that asked another (`here`), which streamed nothing to it.
    Traced {
        events: u64,
        why: String,
        lines: Vec<String>,
    },
    /// How many traces `Untrace` stopped.
    Untraced {
        stopped: u64,
    },
    /// The result of an evaluation in a frame.
    Evaluated(Box<EvalResult>),
}
