//! One HTTP request's channel between its Python handler and the node, inside a worker: the
//! rest of the request body comes in, a streamed answer's head and chunks go out at once.
//!
//! The worker's socket loop feeds [`Inbox`] (body chunks, the client's disconnect); Python
//! reads them with `exchange.read(timeout)` on its pool thread, GIL released while it waits.
//! `exchange.head(...)` and `exchange.send(data)` queue frames on the worker's socket writer,
//! so each chunk leaves for the node as soon as the app produces it.
//!
//! Backpressure: at most [`WINDOW`] bytes of an answer are on their way between `send` and
//! the client's socket. The node says when it handed chunks to the socket
//! ([`Inbox::sent`]); until then a `send` beyond the window waits (GIL released), so a fast
//! generator writing to a slow client blocks instead of filling the node's memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use push_protocol::frame::Kind;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::oneshot;

use super::outbox::Outbox;
use super::wire::{self, FromWorker};

/// What the node says about a request while it runs.
enum Event {
    Chunk(Vec<u8>),
    End,
    Disconnect,
    /// Wakes a reader early (the app finished).
    Wake,
}

/// Bytes of a streamed answer that may be between `send` and the client's socket at once.
pub const WINDOW: u64 = 256 * 1024;

/// How much of the answer is on its way; a `send` waits on `room` while the window is full.
#[derive(Default)]
struct Credit {
    inflight: Mutex<u64>,
    room: Condvar,
}

/// The socket loop's end of an exchange.
#[derive(Clone)]
pub struct Inbox {
    events: Sender<Event>,
    gone: Arc<AtomicBool>,
    credit: Arc<Credit>,
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
        self.credit.room.notify_all();
    }

    /// The node handed `bytes` of the answer to the client's socket.
    pub fn sent(&self, bytes: u64) {
        let mut inflight = self
            .credit
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *inflight = inflight.saturating_sub(bytes);
        self.credit.room.notify_all();
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
    out: Outbox,
    events: Mutex<Receiver<Event>>,
    wake: Sender<Event>,
    gone: Arc<AtomicBool>,
    /// Fired by the first `head`: the handler has started answering (its timeout stops).
    started: Mutex<Option<oneshot::Sender<()>>>,
    credit: Arc<Credit>,
}

impl Exchange {
    /// An exchange for job `id` whose frames go to `out`; returns the loop's inbox and the
    /// signal of the answer's start.
    pub fn new(id: u64, out: Outbox) -> (Exchange, Inbox, oneshot::Receiver<()>) {
        let (events, received) = channel();
        let gone = Arc::new(AtomicBool::new(false));
        let (started, started_rx) = oneshot::channel();
        let credit = Arc::new(Credit::default());
        let exchange = Exchange {
            credit: credit.clone(),
            id,
            out,
            events: Mutex::new(received),
            wake: events.clone(),
            gone: gone.clone(),
            started: Mutex::new(Some(started)),
        };
        (
            exchange,
            Inbox {
                events,
                gone,
                credit,
            },
            started_rx,
        )
    }

    /// Waits until `len` more bytes fit in the window (an empty window always takes a
    /// chunk, however large), the client is gone, or `wait` passed; whether they fit.
    fn wait_for_room(&self, len: u64, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        let mut inflight = self
            .credit
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            if self.gone.load(Ordering::Relaxed) {
                return false;
            }
            if *inflight == 0 || *inflight + len <= WINDOW {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            // Wake at least every second to notice a disconnect that raced the wait.
            inflight = self
                .credit
                .room
                .wait_timeout(inflight, left.min(Duration::from_secs(1)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn send_frame(&self, message: &FromWorker) -> bool {
        match wire::encode(Kind::Response, message) {
            Ok(bytes) => self.out.send(bytes),
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

    /// Waits up to `timeout` seconds until the window has room for `size` more bytes of the
    /// answer (for ASGI, which waits on an executor thread so its loop never blocks); false
    /// on timeout or once the client is gone.
    fn wait_room(&self, py: Python<'_>, size: u64, timeout: f64) -> bool {
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        py.detach(|| self.wait_for_room(size, wait))
    }

    /// Sends one piece of the body to the client; false once the client is gone. Waits
    /// (GIL released) while [`WINDOW`] bytes are already on their way: a slow client slows
    /// the app down instead of filling the node's memory.
    fn send(&self, py: Python<'_>, data: &[u8]) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        let len = data.len() as u64;
        if !py.detach(|| self.wait_for_room(len, Duration::from_secs(86_400))) {
            return false;
        }
        *self
            .credit
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += len;
        self.send_frame(&FromWorker::HttpChunk {
            id: self.id,
            data: data.to_vec().into(),
        })
    }
}
