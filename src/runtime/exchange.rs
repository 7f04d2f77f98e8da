//! One HTTP request's channel between its Python handler and the node, inside a worker: the
//! rest of the request body comes in, a streamed answer's head and chunks go out at once.
//!
//! The worker's socket loop feeds [`Inbox`] (body chunks, the client's disconnect); Python
//! reads them with `exchange.read(timeout)` on its pool thread, GIL released while it waits.
//! `exchange.head(...)` and `exchange.send(data)` queue frames on the worker's socket writer,
//! so each chunk leaves for the node as soon as the app produces it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_protocol::frame::Kind;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, FromWorker};

/// What the node says about a request while it runs.
enum Event {
    Chunk(Vec<u8>),
    End,
    Disconnect,
    /// Wakes a reader early (the app finished).
    Wake,
}

/// The socket loop's end of an exchange.
#[derive(Clone)]
pub struct Inbox {
    events: Sender<Event>,
    gone: Arc<AtomicBool>,
}

impl Inbox {
    /// More body (`Some`) or its end (`None`).
    pub fn body(&self, chunk: Option<Vec<u8>>) {
        let _ = self.events.send(chunk.map_or(Event::End, Event::Chunk));
    }

    /// The client went away.
    pub fn disconnect(&self) {
        self.gone.store(true, Ordering::Relaxed);
        let _ = self.events.send(Event::Disconnect);
    }
}

/// `read`'s answer kinds (Python sees the numbers).
const TIMEOUT: u8 = 0;
const CHUNK: u8 = 1;
const END: u8 = 2;
const DISCONNECT: u8 = 3;

/// The Python side of an exchange (`_push_runtime.handle_http`'s `exchange` argument).
#[pyclass]
pub struct Exchange {
    id: u64,
    out: mpsc::UnboundedSender<Vec<u8>>,
    events: Mutex<Receiver<Event>>,
    wake: Sender<Event>,
    gone: Arc<AtomicBool>,
    /// Fired by the first `head`: the handler has started answering (its timeout stops).
    started: Mutex<Option<oneshot::Sender<()>>>,
}

impl Exchange {
    /// An exchange for job `id` whose frames go to `out`; returns the loop's inbox and the
    /// signal of the answer's start.
    pub fn new(
        id: u64,
        out: mpsc::UnboundedSender<Vec<u8>>,
    ) -> (Exchange, Inbox, oneshot::Receiver<()>) {
        let (events, received) = channel();
        let gone = Arc::new(AtomicBool::new(false));
        let (started, started_rx) = oneshot::channel();
        let exchange = Exchange {
            id,
            out,
            events: Mutex::new(received),
            wake: events.clone(),
            gone: gone.clone(),
            started: Mutex::new(Some(started)),
        };
        (exchange, Inbox { events, gone }, started_rx)
    }

    fn send_frame(&self, message: &FromWorker) -> bool {
        match wire::encode(Kind::Response, message) {
            Ok(bytes) => self.out.send(bytes).is_ok(),
            Err(e) => {
                tracing::error!("cannot encode a response frame: {e}");
                false
            }
        }
    }
}

#[pymethods]
impl Exchange {
    /// Waits up to `timeout` seconds for news: `(0, None)` nothing yet, `(1, bytes)` more body,
    /// `(2, None)` the body is complete, `(3, None)` the client went away.
    fn read(&self, py: Python<'_>, timeout: f64) -> (u8, Option<Py<PyBytes>>) {
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let event = py.detach(|| {
            let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            match events.recv_timeout(wait) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Event::Disconnect),
            }
        });
        match event {
            None | Some(Event::Wake) => (TIMEOUT, None),
            Some(Event::Chunk(data)) => (CHUNK, Some(PyBytes::new(py, &data).unbind())),
            Some(Event::End) => (END, None),
            Some(Event::Disconnect) => (DISCONNECT, None),
        }
    }

    /// Ends a `read` that is waiting (from another thread).
    fn wake(&self) {
        let _ = self.wake.send(Event::Wake);
    }

    /// Whether the client has gone away.
    #[getter]
    fn disconnected(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Sends the answer's status and headers (once, before any `send`).
    fn head(&self, status: u16, headers: Vec<(String, String)>, version: Option<u64>) -> bool {
        if let Some(started) = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = started.send(());
        }
        self.send_frame(&FromWorker::HttpHead {
            id: self.id,
            status,
            headers,
            version,
        })
    }

    /// Sends one piece of the body to the client at once; false once the client is gone.
    fn send(&self, data: &[u8]) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        self.send_frame(&FromWorker::HttpChunk {
            id: self.id,
            data: data.to_vec().into(),
        })
    }
}
