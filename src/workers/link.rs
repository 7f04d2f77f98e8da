//! The node's side of one worker's socket: jobs go out with ids, their answers (and an
//! eval's streamed output) come back, and the worker's calls are answered through the node's
//! [`Cluster`], as a client's requests would be.
//!
//! When the worker dies, its supervisor closes the link with the reason (signal or exit
//! code): every job in flight on it fails at once with that reason.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_protocol::frame::Kind;
use push_protocol::{ErrorBody, ErrorCode, Stream};
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot, watch};

use super::WorkerError;
use crate::runtime::cluster::Cluster;
use crate::runtime::outbox::Outbox;
use crate::runtime::wire::{self, Answer, Call, Done, FromWorker, Job, ToWorker};

/// An eval's output chunks while it runs.
pub type Output = mpsc::UnboundedReceiver<(Stream, String)>;

/// A streamed HTTP answer's pieces as they arrive.
#[derive(Debug)]
pub enum HttpEvent {
    Head {
        status: u16,
        headers: Vec<(String, String)>,
        version: Option<u64>,
    },
    Chunk(Vec<u8>),
}

/// Where a job's answer goes.
enum Waiter {
    Done(oneshot::Sender<Result<Done, WorkerError>>),
    Eval {
        output: mpsc::UnboundedSender<(Stream, String)>,
        done: oneshot::Sender<Result<Done, WorkerError>>,
    },
    Http {
        events: mpsc::UnboundedSender<HttpEvent>,
        done: oneshot::Sender<Result<Done, WorkerError>>,
    },
}

impl Waiter {
    fn finish(self, result: Result<Done, WorkerError>) {
        let (Waiter::Done(done) | Waiter::Eval { done, .. } | Waiter::Http { done, .. }) = self;
        let _ = done.send(result);
    }
}

/// An HTTP job under way on a worker: its answer's pieces, its end, and the way to send it
/// the rest of the request body. Counts as in flight on its worker until dropped; dropped
/// before its end, it tells the worker the client went away.
pub struct HttpCall {
    link: Arc<Link>,
    id: u64,
    pub events: mpsc::UnboundedReceiver<HttpEvent>,
    pub done: oneshot::Receiver<Result<Done, WorkerError>>,
    finished: bool,
}

impl HttpCall {
    /// Tells the app its client is gone (or sent too much).
    pub fn disconnect(&self) {
        self.link.to_worker(&ToWorker::Disconnect { id: self.id });
    }

    /// `bytes` of the streamed answer went to the client's socket: the worker may send more.
    pub fn sent(&self, bytes: u64) {
        self.link.to_worker(&ToWorker::Sent { id: self.id, bytes });
    }

    /// The answer is complete: dropping this no longer means a disconnect.
    pub fn finished(&mut self) {
        self.finished = true;
    }

    /// Another handle for the request body, for a task that streams it in.
    pub fn body_sender(&self) -> BodySender {
        BodySender {
            link: self.link.clone(),
            id: self.id,
        }
    }
}

impl Drop for HttpCall {
    fn drop(&mut self) {
        self.link.inflight.fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            self.disconnect();
        }
    }
}

/// Sends the rest of a request body to the worker running it.
pub struct BodySender {
    link: Arc<Link>,
    id: u64,
}

impl BodySender {
    /// More request body (`Some`), or its end (`None`).
    pub fn body(&self, chunk: Option<Vec<u8>>) {
        self.link.to_worker(&ToWorker::Body {
            id: self.id,
            chunk: chunk.map(Into::into),
        });
    }

    /// Tells the app its request is cut off (too large a body, or the client left).
    pub fn disconnect(&self) {
        self.link.to_worker(&ToWorker::Disconnect { id: self.id });
    }
}

/// A connected worker.
pub struct Link {
    out: Outbox,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Waiter>>,
    /// Why the link closed, once it has; jobs sent after that fail with it.
    closed: Mutex<Option<String>>,
    /// Flips to true when the worker's socket ends.
    ended: watch::Sender<bool>,
    /// Jobs in flight (the pool sends a request to the least busy worker).
    pub inflight: AtomicUsize,
    /// The worker's process id and Python version, from its hello.
    pub pid: u32,
    pub python: String,
    /// The worker's `sys.prefix`.
    pub prefix: String,
    /// The apps this worker holds a version of (loaded or replayed): the pool sends an app's
    /// requests only to workers that hold it, while any does.
    pub apps: Mutex<BTreeSet<String>>,
}

/// Counts a job in flight for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The refusal a deploy gate's write gets.
pub fn gate_refusal() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Invalid,
        "the deploy gate imports a new version in a scratch worker, where cluster writes (and evals) are refused (the version is not active yet): move module-level writes into a function, a @push.daemon or a route",
    )
}

impl Link {
    /// Reads the worker's hello on `stream` (within `within`), then serves the link: answers
    /// come back to their jobs, the worker's calls go to `cluster` (reads only when
    /// `scratch`).
    pub async fn connect(
        stream: tokio::net::UnixStream,
        cluster: Arc<dyn Cluster>,
        scratch: bool,
        within: Duration,
    ) -> Result<Arc<Link>, WorkerError> {
        let (mut reader, writer) = stream.into_split();
        let hello = tokio::time::timeout(within, wire::read::<FromWorker, _>(&mut reader)).await;
        let (pid, python, prefix) = match hello {
            Ok(Ok(Some(FromWorker::Hello {
                pid,
                python,
                prefix,
            }))) => (pid, python, prefix),
            Ok(Ok(other)) => {
                return Err(WorkerError::Start(format!(
                    "the worker's first message was not its hello: {other:?}"
                )))
            }
            Ok(Err(e)) => return Err(WorkerError::Start(format!("reading its hello: {e}"))),
            Err(_) => {
                return Err(WorkerError::Start(format!(
                    "no hello within {within:?} (is the machine overloaded?)"
                )))
            }
        };
        let out = Outbox::new(writer);
        let (ended, _) = watch::channel(false);
        let link = Arc::new(Link {
            out,
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            closed: Mutex::new(None),
            ended,
            inflight: AtomicUsize::new(0),
            pid,
            python,
            prefix,
            apps: Mutex::new(BTreeSet::new()),
        });
        tokio::spawn(read_loop(link.clone(), reader, cluster, scratch));
        Ok(link)
    }

    /// Whether this worker holds a version of `app`.
    pub fn holds(&self, app: &str) -> bool {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(app)
    }

    /// Notes that this worker now holds a version of `app`.
    pub fn hold(&self, app: &str) {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_string());
    }

    /// Waits until the worker's socket ends.
    pub async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|e| *e).await;
    }

    /// Fails every job in flight (and every later one) with `why`.
    pub fn close(&self, why: String) {
        let waiters: Vec<Waiter> = {
            let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
            if closed.is_none() {
                *closed = Some(why.clone());
            }
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().map(|(_, w)| w).collect()
        };
        for waiter in waiters {
            waiter.finish(Err(WorkerError::Lost(why.clone())));
        }
    }

    fn send(&self, id: u64, job: Job, waiter: Waiter) {
        if let Some(why) = self
            .closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return waiter.finish(Err(WorkerError::Lost(why)));
        }
        let bytes = match wire::encode(Kind::Request, &ToWorker::Job { id, job }) {
            Ok(bytes) => bytes,
            Err(e) => return waiter.finish(Err(WorkerError::Failed(e.to_string()))),
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, waiter);
        self.out.send(bytes);
    }

    /// Runs `job` on the worker and waits for its answer.
    pub async fn job(&self, job: Job) -> Result<Done, WorkerError> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        let _busy = Busy(&self.inflight);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.send(id, job, Waiter::Done(tx));
        match rx.await {
            Ok(Ok(Done::Failed(text))) => Err(WorkerError::Failed(text)),
            Ok(result) => result,
            Err(_) => Err(WorkerError::Lost("the worker's link closed".into())),
        }
    }

    /// Starts an HTTP job: its streamed pieces (if it streams) and its end.
    pub fn http(self: &Arc<Self>, job: Job) -> HttpCall {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (events, events_rx) = mpsc::unbounded_channel();
        let (done, done_rx) = oneshot::channel();
        self.send(id, job, Waiter::Http { events, done });
        HttpCall {
            link: self.clone(),
            id,
            events: events_rx,
            done: done_rx,
            finished: false,
        }
    }

    fn to_worker(&self, message: &ToWorker) {
        if let Ok(bytes) = wire::encode(Kind::Request, message) {
            self.out.send(bytes);
        }
    }

    fn http_event(&self, id: u64, event: HttpEvent) {
        if let Some(Waiter::Http { events, .. }) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            let _ = events.send(event);
        }
    }

    /// Starts an eval job: its output while it runs, then its answer.
    pub fn eval(&self, job: Job) -> (Output, oneshot::Receiver<Result<Done, WorkerError>>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (output, output_rx) = mpsc::unbounded_channel();
        let (done, done_rx) = oneshot::channel();
        self.send(id, job, Waiter::Eval { output, done });
        (output_rx, done_rx)
    }

    fn finish(&self, id: u64, done: Done) {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(waiter) = waiter {
            waiter.finish(Ok(done));
        }
    }

    fn output(&self, id: u64, stream: Stream, text: String) {
        if let Some(Waiter::Eval { output, .. }) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            let _ = output.send((stream, text));
        }
    }

    fn answer(&self, id: u64, answer: Answer) {
        self.to_worker(&ToWorker::Answer { id, answer });
    }
}

async fn read_loop(
    link: Arc<Link>,
    mut reader: OwnedReadHalf,
    cluster: Arc<dyn Cluster>,
    scratch: bool,
) {
    loop {
        match wire::read::<FromWorker, _>(&mut reader).await {
            Ok(Some(FromWorker::Done { id, done })) => link.finish(id, done),
            Ok(Some(FromWorker::Output { id, stream, text })) => link.output(id, stream, text),
            Ok(Some(FromWorker::Call { id, call })) => {
                let (link, cluster) = (link.clone(), cluster.clone());
                tokio::spawn(async move {
                    let answer = serve_call(cluster.as_ref(), call, scratch).await;
                    link.answer(id, answer);
                });
            }
            Ok(Some(FromWorker::Log(record))) => cluster.log(record),
            Ok(Some(FromWorker::HttpHead {
                id,
                status,
                headers,
                version,
            })) => link.http_event(
                id,
                HttpEvent::Head {
                    status,
                    headers,
                    version,
                },
            ),
            Ok(Some(FromWorker::HttpChunk { id, data })) => {
                link.http_event(id, HttpEvent::Chunk(data.into_vec()))
            }
            Ok(Some(FromWorker::Hello { .. })) => {}
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(
                    pid = link.pid,
                    "unreadable message from a python worker: {e}"
                );
                break;
            }
        }
    }
    link.ended.send_replace(true);
}

/// Answers one call of a worker's app code.
async fn serve_call(cluster: &dyn Cluster, call: Call, scratch: bool) -> Answer {
    let result = match call {
        Call::Op(op) => {
            if scratch && !push_protocol::access::is_read(&op) {
                return Answer::Outcome(Err(gate_refusal()));
            }
            return Answer::Outcome(cluster.call(op).await);
        }
        Call::Status => cluster.status().map(|s| Answer::Status(Box::new(s))),
        Call::Members => cluster.members().map(Answer::Members),
        Call::VersionFiles { app, number } => {
            cluster.version_files(&app, number).map(Answer::Files)
        }
        Call::TsCursor { series, unit } => cluster.ts_cursor(&series, &unit).map(Answer::Cursor),
        Call::TsAfter {
            series,
            partition,
            after,
            limit,
            wait_ms,
        } => cluster
            .ts_after(
                series,
                partition,
                after,
                limit,
                Duration::from_millis(wait_ms),
            )
            .await
            .map(Answer::Points),
    };
    result.unwrap_or_else(Answer::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use push_protocol::Op;

    #[test]
    fn the_gate_may_read_but_not_write() {
        assert!(push_protocol::access::is_read(&Op::KvGet {
            map: "m".into(),
            key: "k".into(),
            read: push_protocol::ReadMode::Stale,
        }));
        assert!(!push_protocol::access::is_read(&Op::KvSet {
            map: "m".into(),
            key: "k".into(),
            value: push_protocol::Value::Int(1),
        }));
        assert!(!push_protocol::access::is_read(&Op::QueueTake {
            queue: "q".into(),
            lease_ms: 1000,
            wait_ms: 0,
        }));
        assert!(gate_refusal().message.contains("move module-level writes"));
    }
}
