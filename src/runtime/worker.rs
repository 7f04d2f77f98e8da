//! The worker process (`push worker`, started by `push node`): one embedded CPython that runs
//! an app's code for its node, over the Unix socket it inherited as a file descriptor.
//!
//! It answers the node's [`Job`]s on its Python threads (handlers, evals, loads, tasks) and
//! reaches the cluster only through [`SocketCluster`], the runtime's [`Cluster`] interface
//! over the same socket: `push.kv(...)` in app code becomes a [`Call`] the node answers as it
//! would a client's request. The worker exits when its node closes the socket (and, through
//! `PR_SET_PDEATHSIG`, when its node dies), and by itself when a handler does not stop within
//! [`GRACE`] of being interrupted at its route's timeout: its node then starts a fresh one.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_protocol::frame::Kind;
use push_protocol::{ByteBuf, ErrorBody, ErrorCode, Member, NodeStatus, Op, Outcome, TsPoint};
use tokio::sync::oneshot;

use super::cluster::{Answer as Pending, Cluster};
use super::eval::Out;
use super::exchange::{Exchange, Inbox};
use super::outbox::Outbox;
use super::wire::{self, Answer, Call, Done, FromWorker, Job, ToWorker};
use super::{Runtime, RuntimeError};

/// How long a handler may keep running after its timeout's interrupt before the worker gives
/// up on it and exits (its node restarts it; other requests in flight on it get 502).
pub const GRACE: Duration = Duration::from_secs(2);

/// A route's timeout when it names none.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The exit code of a worker that gave up on a handler stuck past its timeout.
pub const EXIT_STUCK: i32 = 70;

/// The worker's half of the socket: frames out through its [`Outbox`], calls awaiting answers.
struct Link {
    out: Outbox,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// HTTP jobs in flight: where their body chunks and disconnects go.
    inboxes: Mutex<HashMap<u64, Inbox>>,
}

impl Link {
    fn send(&self, message: &FromWorker) {
        match wire::encode(Kind::Response, message) {
            Ok(bytes) => {
                self.out.send(bytes);
            }
            Err(e) => tracing::error!("cannot encode a message for the node: {e}"),
        }
    }

    async fn call(&self, call: Call) -> Result<Answer, ErrorBody> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        self.send(&FromWorker::Call { id, call });
        rx.await.map_err(|_| {
            ErrorBody::new(
                ErrorCode::Unavailable,
                "this worker lost its node; it is being replaced, try again".to_string(),
            )
        })
    }
}

fn unexpected(answer: Answer) -> ErrorBody {
    if let Answer::Error(e) = answer {
        return e;
    }
    ErrorBody::new(
        ErrorCode::Internal,
        format!("unexpected answer from the node: {answer:?}"),
    )
}

/// The cluster as app code in a worker reaches it: every call is a message to the node.
struct SocketCluster {
    link: Arc<Link>,
    handle: tokio::runtime::Handle,
}

impl SocketCluster {
    /// A call from a Python thread (never a tokio worker), blocking until the node answers.
    fn blocking(&self, call: Call) -> Result<Answer, ErrorBody> {
        self.handle.block_on(self.link.call(call))
    }
}

impl Cluster for SocketCluster {
    fn call(&self, op: Op) -> Pending<'_, Outcome> {
        Box::pin(async move {
            match self.link.call(Call::Op(op)).await? {
                Answer::Outcome(outcome) => outcome,
                other => Err(unexpected(other)),
            }
        })
    }

    fn status(&self) -> Result<NodeStatus, ErrorBody> {
        match self.blocking(Call::Status)? {
            Answer::Status(status) => Ok(*status),
            other => Err(unexpected(other)),
        }
    }

    fn members(&self) -> Result<Vec<Member>, ErrorBody> {
        match self.blocking(Call::Members)? {
            Answer::Members(members) => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    fn version_files(
        &self,
        app: &str,
        number: u64,
    ) -> Result<Option<BTreeMap<String, ByteBuf>>, ErrorBody> {
        let call = Call::VersionFiles {
            app: app.to_string(),
            number,
        };
        match self.blocking(call)? {
            Answer::Files(files) => Ok(files),
            other => Err(unexpected(other)),
        }
    }

    fn ts_cursor(&self, series: &str, unit: &str) -> Result<u64, ErrorBody> {
        let call = Call::TsCursor {
            series: series.to_string(),
            unit: unit.to_string(),
        };
        match self.blocking(call)? {
            Answer::Cursor(cursor) => Ok(cursor),
            other => Err(unexpected(other)),
        }
    }

    fn ts_after(
        &self,
        series: String,
        partition: u32,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Pending<'_, Result<Vec<TsPoint>, ErrorBody>> {
        Box::pin(async move {
            let call = Call::TsAfter {
                series,
                partition,
                after,
                limit,
                wait_ms: wait.as_millis() as u64,
            };
            match self.link.call(call).await? {
                Answer::Points(points) => Ok(points),
                other => Err(unexpected(other)),
            }
        })
    }

    fn log(&self, record: wire::AppLog) {
        self.link.send(&FromWorker::Log(record));
    }
}

/// Runs the worker process on the socket at file descriptor `fd` with `threads` Python
/// threads. Returns when the node closes the socket.
pub fn main(fd: i32, threads: usize) -> Result<(), RuntimeError> {
    // SAFETY: fcntl on an arbitrary descriptor number only reads its flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(RuntimeError::Start(format!(
            "no socket on file descriptor {fd}: `push worker` is started by `push node` for its Python code, not by hand"
        )));
    }
    // SAFETY: the descriptor is open (checked above) and owned by nothing else in this process:
    // the node passed it for this purpose.
    let socket = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    socket
        .set_nonblocking(true)
        .map_err(|e| RuntimeError::Start(format!("worker socket: {e}")))?;
    // One thread does the worker's socket work (decoding, encoding, routing answers): every
    // hop between its tasks is then a plain poll, not a wake-up of another thread. Python
    // runs on threads of its own and blocks on this runtime's handle when it calls the node.
    let io = tokio::runtime::Builder::new_current_thread()
        .thread_name("worker-io")
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Start(format!("worker async runtime: {e}")))?;
    io.block_on(serve(socket, threads))
}

async fn serve(socket: std::os::unix::net::UnixStream, threads: usize) -> Result<(), RuntimeError> {
    let socket = tokio::net::UnixStream::from_std(socket)
        .map_err(|e| RuntimeError::Start(format!("worker socket: {e}")))?;
    let (mut reader, writer) = socket.into_split();
    let out = Outbox::new(writer);
    let link = Arc::new(Link {
        out,
        next: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        inboxes: Mutex::new(HashMap::new()),
    });
    let runtime = tokio::task::spawn_blocking(move || Runtime::start(threads))
        .await
        .map_err(|e| RuntimeError::Start(e.to_string()))??;
    super::native::install(
        Arc::new(SocketCluster {
            link: link.clone(),
            handle: tokio::runtime::Handle::current(),
        }),
        tokio::runtime::Handle::current(),
    );
    link.send(&FromWorker::Hello {
        pid: std::process::id(),
        python: runtime.python_version().to_string(),
        prefix: Runtime::python_info().1,
    });
    loop {
        let message = match wire::read::<ToWorker, _>(&mut reader).await {
            Ok(Some(message)) => message,
            Ok(None) => {
                runtime.shutdown_apps().await;
                return Ok(());
            }
            Err(e) => {
                tracing::error!("worker: bad message from the node, leaving: {e}");
                return Ok(());
            }
        };
        match message {
            ToWorker::Answer { id, answer } => {
                let waiter = link
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(answer);
                }
            }
            ToWorker::Job {
                id,
                job: Job::Http(request),
            } => {
                let (exchange, inbox, answering) = Exchange::new(id, link.out.clone());
                link.inboxes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, inbox);
                let (runtime, link) = (runtime.clone(), link.clone());
                tokio::spawn(async move {
                    let done = http(&runtime, request, exchange, answering).await;
                    link.inboxes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    link.send(&FromWorker::Done { id, done });
                });
            }
            ToWorker::Job {
                id,
                job:
                    Job::Eval {
                        session,
                        code,
                        module,
                        node,
                    },
            } => {
                // The eval thread itself writes the output and the answer to the node's
                // socket, in order: no wake-up of this thread between eval and node.
                let (out, done) = (link.clone(), link.clone());
                let out = Out::Direct(Box::new(move |stream, text| {
                    out.send(&FromWorker::Output { id, stream, text })
                }));
                runtime.eval_to(session, code, module, node, out, move |result| {
                    let done_now = match result {
                        Ok((result, patch)) => Done::Eval(result, patch),
                        Err(e) => failed(e),
                    };
                    done.send(&FromWorker::Done { id, done: done_now });
                });
            }
            ToWorker::Job { id, job } => {
                let (runtime, link) = (runtime.clone(), link.clone());
                tokio::spawn(async move {
                    let done = run(&runtime, &link, id, job).await;
                    link.send(&FromWorker::Done { id, done });
                });
            }
            ToWorker::Body { id, chunk } => {
                if let Some(inbox) = link
                    .inboxes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                {
                    inbox.body(chunk.map(|c| c.into_vec()));
                }
            }
            ToWorker::Disconnect { id } => {
                if let Some(inbox) = link
                    .inboxes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                {
                    inbox.disconnect();
                }
            }
            ToWorker::Sent { id, bytes } => {
                if let Some(inbox) = link
                    .inboxes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                {
                    inbox.sent(bytes);
                }
            }
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Done {
    Done::Failed(e.to_string())
}

/// Runs one job and says how it went.
async fn run(runtime: &Arc<Runtime>, link: &Link, id: u64, job: Job) -> Done {
    match job {
        Job::Load {
            app,
            number,
            files,
            entry,
        } => match runtime.load(&app, number, files, entry).await {
            Ok(()) => Done::Refusal(None),
            Err(e) => Done::Refusal(Some(e.to_string())),
        },
        Job::Gate {
            app,
            number,
            files,
            entry,
        } => match runtime.gate(&app, number, files, entry).await {
            Ok(refusal) => Done::Refusal(refusal),
            Err(e) => failed(e),
        },
        Job::Http(_) => failed("an HTTP job reached the generic job runner"),
        Job::Eval { .. } => failed("an eval reached the generic job runner"),
        Job::Interrupt { session } => match runtime.interrupt(session).await {
            Ok(ran) => Done::Bool(ran),
            Err(e) => failed(e),
        },
        Job::OpenSession => match runtime.open_session().await {
            Ok(session) => Done::Session(session),
            Err(e) => failed(e),
        },
        Job::CloseSession { session } => match runtime.close_session(session).await {
            Ok(existed) => Done::Bool(existed),
            Err(e) => failed(e),
        },
        Job::IsComplete { code } => match runtime.is_complete(code).await {
            Ok(complete) => Done::Bool(complete),
            Err(e) => failed(e),
        },
        Job::Complete {
            session,
            code,
            cursor,
            module,
        } => match runtime.complete(session, code, cursor, module).await {
            Ok((start, items)) => Done::Completions(start, items),
            Err(e) => failed(e),
        },
        Job::Inspect { session, expr } => match runtime.inspect(session, expr).await {
            Ok(inspection) => Done::Inspection(inspection),
            Err(e) => failed(e),
        },
        Job::HeadTasks { app } => match runtime.head_tasks_json(app).await {
            Ok(json) => Done::Json(json),
            Err(e) => failed(e),
        },
        Job::Reconcile { app, wanted } => match runtime.reconcile(app, wanted).await {
            Ok(()) => Done::Unit,
            Err(e) => failed(e),
        },
        Job::Fire { app, name } => match runtime.fire(app, name).await {
            Ok(started) => Done::Bool(started),
            Err(e) => failed(e),
        },
        Job::Reports => match runtime.reports_json().await {
            Ok(json) => Done::Json(Some(json)),
            Err(e) => failed(e),
        },
        Job::Lines { app, unit, after } => match runtime.lines(app, unit, after).await {
            Ok(lines) => Done::Lines(lines),
            Err(e) => failed(e),
        },
        Job::StopTasks => {
            runtime.stop_tasks().await;
            Done::Unit
        }
        Job::Debug { request } => match runtime.debug_json(request).await {
            Ok(json) => Done::Json(Some(json)),
            Err(e) => failed(e),
        },
        Job::EvalInFrame {
            seq,
            frame,
            code,
            scope,
            node,
        } => {
            let (output, done) = runtime.eval_in_frame(seq, frame, code, scope, node);
            match stream_output(link, id, output, done).await {
                Ok((result, patch)) => Done::Eval(result, patch),
                Err(e) => failed(e),
            }
        }
        Job::Trace {
            target,
            max,
            secs,
            scope,
            label,
        } => {
            let (output, done) = runtime.trace(target, max, secs, scope, label);
            match stream_output(link, id, output, done).await {
                Ok(json) => Done::Json(Some(json)),
                Err(e) => failed(e),
            }
        }
        Job::RunLambda { func, args } => Done::Lambda(
            runtime
                .run_lambda(func, args)
                .await
                .map_err(|e| e.to_string()),
        ),
    }
}

/// Sends what a running eval or trace writes to the node as job `id`'s output, then its end.
/// The end is `done`, not the output closing: Python may keep the sink alive after the job
/// returned (a failure kept from a traced call holds the trace's frames, and so its sink).
async fn stream_output<T>(
    link: &Link,
    id: u64,
    mut output: tokio::sync::mpsc::UnboundedReceiver<(push_protocol::Stream, String)>,
    mut done: oneshot::Receiver<Result<T, RuntimeError>>,
) -> Result<T, RuntimeError> {
    let result = loop {
        tokio::select! {
            biased;
            chunk = output.recv() => match chunk {
                Some((stream, text)) => link.send(&FromWorker::Output { id, stream, text }),
                None => break (&mut done).await,
            },
            result = &mut done => break result,
        }
    };
    // Written before the job returned, so already queued.
    while let Ok((stream, text)) = output.try_recv() {
        link.send(&FromWorker::Output { id, stream, text });
    }
    result.map_err(|_| RuntimeError::Stopped)?
}

/// Runs a handler held to its route's timeout until it starts its answer: past it the client
/// gets 504 and the thread a KeyboardInterrupt; a handler still running [`GRACE`] later ends
/// this worker. A streamed answer, once started, runs as long as it likes (the client's
/// disconnect ends it).
async fn http(
    runtime: &Arc<Runtime>,
    request: wire::HttpRequest,
    exchange: Exchange,
    answering: oneshot::Receiver<()>,
) -> Done {
    let runtime = runtime.clone();
    let (started_tx, started) = oneshot::channel();
    let path = format!("{} {}", request.method, request.path);
    let app = request.app.clone();
    let mut answer =
        Box::pin(async move { runtime.http(request, Some(started_tx), exchange).await });
    let (timeout, ident) = tokio::select! {
        out = &mut answer => return http_done(out),
        started = started => match started {
            Ok(started) => started,
            // The route was not matched (404/405) or the call failed: the answer is due now.
            Err(_) => return http_done(answer.await),
        },
    };
    let limit = timeout.map_or(DEFAULT_ROUTE_TIMEOUT, Duration::from_secs_f64);
    let in_time = async {
        tokio::select! {
            out = &mut answer => Some(out),
            Ok(()) = answering => None,
        }
    };
    match tokio::time::timeout(limit, in_time).await {
        Ok(Some(out)) => http_done(out),
        Ok(None) => http_done(answer.await),
        Err(_) => {
            tracing::warn!(%app, route = %path, "handler passed its timeout of {limit:?}: interrupting it");
            let _ = tokio::task::spawn_blocking(move || Runtime::interrupt_thread(ident)).await;
            let (app, route) = (app.clone(), path.clone());
            tokio::spawn(async move {
                if tokio::time::timeout(GRACE, answer).await.is_err() {
                    tracing::error!(%app, %route, "handler did not stop within {GRACE:?} of its interrupt (stuck in C code?): this worker exits and its node starts a fresh one");
                    std::process::exit(EXIT_STUCK);
                }
            });
            Done::Http(wire::HttpResponse {
                status: 504,
                headers: HashMap::from([(
                    "content-type".to_string(),
                    "text/plain; charset=utf-8".to_string(),
                )]),
                body: format!(
                    "the handler of {path} did not answer within its timeout of {} s\n",
                    limit.as_secs_f64()
                )
                .into_bytes()
                .into(),
                version: None,
                error: None,
                streamed: false,
            })
        }
    }
}

fn http_done(out: Result<wire::HttpResponse, RuntimeError>) -> Done {
    match out {
        Ok(response) => Done::Http(response),
        Err(e) => failed(e),
    }
}
