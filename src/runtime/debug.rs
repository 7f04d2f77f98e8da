//! The Rust half of post-mortem and call tracing in a worker: hands the node's requests to
//! `postmortem.py` (kept failures, frames, locals, source, replay) and runs a trace on a
//! thread of its own, its events streaming through an eval [`Sink`](super::eval::Sink).

use pyo3::prelude::*;

use super::eval::on_thread;
use super::{Runtime, RuntimeError};

/// A started trace: its event lines as they happen, then its end (JSON: events, why).
pub type Tracing = (
    tokio::sync::mpsc::UnboundedReceiver<(push_protocol::Stream, String)>,
    tokio::sync::oneshot::Receiver<Result<String, RuntimeError>>,
);

impl Runtime {
    /// Answers one post-mortem request (JSON in, JSON out; see `postmortem.request`).
    pub async fn debug_json(&self, request: String) -> Result<String, RuntimeError> {
        self.run(move |py| -> PyResult<String> {
            py.import("_push_pm")?
                .getattr("request")?
                .call1((request,))?
                .extract()
        })
        .await?
        .map_err(|e| RuntimeError::Python(e.to_string()))
    }

    /// Traces calls of `target` for up to `max` events or `secs` seconds; `label` starts each
    /// event line (which node and worker).
    pub fn trace(
        &self,
        target: String,
        max: u32,
        secs: u32,
        scope: Vec<String>,
        label: String,
    ) -> Tracing {
        on_thread("python-trace", move |py, sink| {
            py.import("_push_pm")?
                .getattr("trace")?
                .call1((target, max, secs, scope, sink, label))?
                .extract()
        })
    }
}
