//! Live evaluation in a worker: each eval runs on an eval thread of its own while it runs (so
//! a runaway one can neither starve HTTP handlers nor block other sessions; finished threads
//! wait for the next eval), streams what it prints through a bounded [`Sink`], and can be
//! interrupted from any other request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Mutex};

use push_protocol::{EvalResult, Inspection, PyException, PyFrame, Stream};
use pyo3::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::{Runtime, RuntimeError};

/// Most bytes one evaluation may stream per output stream; the rest is counted, not sent.
pub const MAX_STREAM: usize = 1 << 20;

/// Where a [`Sink`]'s text goes.
pub enum Out {
    /// To the receiver [`on_thread`] returns.
    Channel(mpsc::UnboundedSender<(Stream, String)>),
    /// Handed on by the Python thread itself (an eval's output frames, written to the node's
    /// socket without waking the worker's socket thread).
    Direct(Box<dyn Fn(Stream, String) + Send + Sync>),
}

/// Where an evaluation's prints go: to the client, capped at [`MAX_STREAM`].
#[pyclass]
pub struct Sink {
    out: Out,
    sent: [AtomicUsize; 2],
    cut: [AtomicUsize; 2],
}

#[pymethods]
impl Sink {
    fn write(&self, stream: usize, text: &str) {
        let i = stream.min(1);
        let sent = self.sent[i].load(Ordering::Relaxed);
        let room = MAX_STREAM.saturating_sub(sent);
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        if take > 0 {
            self.sent[i].fetch_add(take, Ordering::Relaxed);
            let which = if i == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            let text = text[..take].to_string();
            match &self.out {
                Out::Channel(tx) => {
                    let _ = tx.send((which, text));
                }
                Out::Direct(deliver) => deliver(which, text),
            }
        }
        if take < text.len() {
            self.cut[i].fetch_add(text.len() - take, Ordering::Relaxed);
        }
    }
}

impl Sink {
    fn truncation(&self) -> Option<String> {
        let parts: Vec<String> = ["stdout", "stderr"]
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let cut = self.cut[i].load(Ordering::Relaxed);
                (cut > 0).then(|| {
                    format!("{name} cut: {cut} bytes not shown after the first {MAX_STREAM}")
                })
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

type RawFrame = (String, u32, String, String);

/// A started evaluation: its output chunks as they are printed, then its result and, for an
/// evaluation in a module, what of it the node replays on the app's other workers
/// (`_replayed` in session.py: definitions, never a bare expression).
pub type Running = (
    mpsc::UnboundedReceiver<(Stream, String)>,
    oneshot::Receiver<Result<(EvalResult, Option<String>), RuntimeError>>,
);

fn extract_result(py: Python<'_>, obj: &Bound<'_, PyAny>, node: u64) -> PyResult<EvalResult> {
    let _ = py;
    let get = |k: &str| obj.get_item(k);
    let error = get("error")?;
    let error = if error.is_none() {
        None
    } else {
        let frames: Vec<RawFrame> = error.get_item("frames")?.extract()?;
        Some(PyException {
            type_name: error.get_item("type_name")?.extract()?,
            message: error.get_item("message")?.extract()?,
            frames: frames
                .into_iter()
                .map(|(file, line, function, source)| PyFrame {
                    file,
                    line,
                    function,
                    source,
                })
                .collect(),
            formatted: error.get_item("formatted")?.extract()?,
        })
    };
    Ok(EvalResult {
        value: get("value")?.extract()?,
        type_name: get("type_name")?.extract()?,
        error,
        truncated: get("truncated")?.extract()?,
        micros: get("micros")?.extract()?,
        node,
    })
}

/// The result of `session.evaluate`, with what the sink cut noted.
fn finish_result(
    py: Python<'_>,
    raw: &Bound<'_, PyAny>,
    node: u64,
    sink: Py<Sink>,
) -> PyResult<(EvalResult, Option<String>)> {
    let mut result = extract_result(py, raw, node)?;
    let patch: Option<String> = raw.get_item("patch")?.extract()?;
    if let Some(cut) = sink.borrow(py).truncation() {
        result.truncated = Some(match result.truncated.take() {
            Some(t) => format!("{t}; {cut}"),
            None => cut,
        });
    }
    Ok((result, patch))
}

/// What a Python thread writes, and its result once it ends.
pub type OnThread<T> = (
    mpsc::UnboundedReceiver<(Stream, String)>,
    oneshot::Receiver<Result<T, RuntimeError>>,
);

/// The result of an eval interrupted outside its own exception handler.
fn interrupted(node: u64) -> EvalResult {
    EvalResult {
        value: None,
        type_name: None,
        error: Some(PyException {
            type_name: "KeyboardInterrupt".into(),
            message: String::new(),
            frames: Vec::new(),
            formatted: "KeyboardInterrupt".into(),
        }),
        truncated: None,
        micros: 0,
        node,
    }
}

/// A task for an eval thread.
type Task = super::Job;

/// Eval threads waiting for their next task: each is reached through its own channel.
static IDLE: Mutex<Vec<std_mpsc::Sender<Task>>> = Mutex::new(Vec::new());

/// How many eval threads wait for work at most; more that finish at once end.
const KEEP_IDLE: usize = 4;

/// Runs `task` on an idle eval thread, or on a new one when none waits. An eval thread keeps
/// its Python thread state while it lives (the GIL let go while it waits), so an eval costs
/// neither a thread start nor a thread state's set-up.
fn on_eval_thread(name: &str, task: Task) {
    let mut task = task;
    loop {
        let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(thread) = idle else { break };
        match thread.send(task) {
            Ok(()) => return,
            // That thread ended meanwhile: try the next.
            Err(std_mpsc::SendError(back)) => task = back,
        }
    }
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .stack_size(super::PY_STACK)
        .spawn(move || {
            let (tx, rx) = std_mpsc::channel::<Task>();
            let mut first = Some(task);
            super::run_jobs(move || {
                if let Some(task) = first.take() {
                    return Some(task);
                }
                {
                    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
                    if idle.len() >= KEEP_IDLE {
                        return None;
                    }
                    idle.push(tx.clone());
                }
                rx.recv().ok()
            })
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start a {name} thread: {e}");
    }
}

/// Runs `f` with a fresh [`Sink`] on an eval thread (an eval, a trace: either may run long,
/// so never on the pool that serves requests). What it writes arrives on the receiver while
/// it runs; its result on the oneshot.
pub fn on_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce(Python<'_>, Py<Sink>) -> PyResult<T> + Send + 'static,
) -> OnThread<T> {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel();
    on_thread_to(
        name,
        Out::Channel(out_tx),
        move |r| drop(done_tx.send(r)),
        f,
    );
    (out_rx, done_rx)
}

/// A result's receiver that hears [`RuntimeError::Stopped`] if it is dropped unused: a task
/// dropped unrun (no thread could start) or unwound by a panic still answers.
struct Answer<F: FnOnce(Result<T, RuntimeError>), T>(Option<F>, std::marker::PhantomData<T>);

impl<F: FnOnce(Result<T, RuntimeError>), T> Answer<F, T> {
    fn give(mut self, result: Result<T, RuntimeError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl<F: FnOnce(Result<T, RuntimeError>), T> Drop for Answer<F, T> {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(RuntimeError::Stopped));
        }
    }
}

/// [`on_thread`], with what `f` writes going to `out` and its result to `done`, called on
/// the eval thread as it ends (with [`RuntimeError::Stopped`] if it never runs).
pub fn on_thread_to<T: Send + 'static>(
    name: &str,
    out: Out,
    done: impl FnOnce(Result<T, RuntimeError>) + Send + 'static,
    f: impl FnOnce(Python<'_>, Py<Sink>) -> PyResult<T> + Send + 'static,
) {
    let done = Answer(Some(done), std::marker::PhantomData);
    on_eval_thread(
        name,
        Box::new(move |py| {
            let result = Py::new(
                py,
                Sink {
                    out,
                    sent: Default::default(),
                    cut: Default::default(),
                },
            )
            .and_then(|sink| f(py, sink));
            done.give(result.map_err(|e| RuntimeError::Python(e.to_string())));
        }),
    );
}

/// An eval's result and, for an eval in a module, what of it to replay on the app's other
/// workers.
pub type Evaluated = Result<(EvalResult, Option<String>), RuntimeError>;

impl Runtime {
    fn session_module(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        py.import("sys")?
            .getattr("modules")?
            .get_item("_push_session")
    }

    /// Starts an evaluation on its own thread. What it prints goes to `out` while it runs;
    /// its result to `done`, on that thread, as it ends.
    pub fn eval_to(
        &self,
        session: Option<u64>,
        code: String,
        module: Option<String>,
        node: u64,
        out: Out,
        done: impl FnOnce(Evaluated) + Send + 'static,
    ) {
        on_thread_to("python-eval", out, done, move |py, sink| {
            let called = Self::session_module(py)?.getattr("evaluate")?.call1((
                session,
                code,
                module,
                sink.clone_ref(py),
            ));
            let raw = match called {
                Ok(raw) => raw,
                // An interrupt that lands just outside `evaluate`'s own handler (as it starts
                // or returns) is still the eval's interruption, reported as one.
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => {
                    return Ok((interrupted(node), None))
                }
                Err(e) => return Err(e),
            };
            finish_result(py, &raw, node, sink)
        })
    }

    /// Starts an evaluation in frame `frame` of kept failure `seq` (see `postmortem.py`),
    /// as [`Runtime::eval`] does; an unknown failure or frame is an error saying so.
    pub fn eval_in_frame(
        &self,
        seq: u64,
        frame: u32,
        code: String,
        scope: Vec<String>,
        node: u64,
    ) -> Running {
        on_thread("python-eval", move |py, sink| {
            let ns = py
                .import("_push_pm")?
                .getattr("namespace")?
                .call1((seq, frame, scope))?;
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("frame", ns)?;
            let raw = Self::session_module(py)?.getattr("evaluate")?.call(
                (None::<u64>, code, None::<String>, sink.clone_ref(py)),
                Some(&kwargs),
            )?;
            finish_result(py, &raw, node, sink)
        })
    }

    /// Interrupts the evaluation running in `session`; says whether one was running.
    pub async fn interrupt(&self, session: u64) -> Result<bool, RuntimeError> {
        // Not through the pool: it may be busy. The GIL is free at least every switch interval.
        tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                Self::session_module(py)?
                    .getattr("interrupt")?
                    .call1((session,))?
                    .extract::<bool>()
            })
        })
        .await
        .map_err(|_| RuntimeError::Stopped)?
        .map_err(|e| RuntimeError::Python(e.to_string()))
    }

    /// Calls a function of the session module on a pool thread and extracts its result.
    async fn session_call<T, A>(&self, name: &'static str, args: A) -> Result<T, RuntimeError>
    where
        T: for<'py> FromPyObjectOwned<'py> + Send + 'static,
        A: for<'py> pyo3::call::PyCallArgs<'py> + Send + 'static,
    {
        self.run(move |py| -> Result<T, RuntimeError> {
            Self::session_module(py)
                .and_then(|m| m.getattr(name))
                .and_then(|f| f.call1(args))
                .and_then(|r| r.extract::<T>().map_err(Into::into))
                .map_err(|e| RuntimeError::Python(e.to_string()))
        })
        .await?
    }

    pub async fn open_session(&self) -> Result<u64, RuntimeError> {
        self.session_call("open_session", ()).await
    }

    pub async fn close_session(&self, session: u64) -> Result<bool, RuntimeError> {
        self.session_call("close_session", (session,)).await
    }

    pub async fn is_complete(&self, code: String) -> Result<bool, RuntimeError> {
        self.session_call("is_complete", (code,)).await
    }

    pub async fn complete(
        &self,
        session: Option<u64>,
        code: String,
        cursor: usize,
        module: Option<String>,
    ) -> Result<(usize, Vec<String>), RuntimeError> {
        self.session_call("complete", (session, code, cursor, module))
            .await
    }

    pub async fn inspect(
        &self,
        session: Option<u64>,
        expr: String,
    ) -> Result<Inspection, RuntimeError> {
        self.run(move |py| -> Result<Inspection, RuntimeError> {
            let call = || -> PyResult<Inspection> {
                let d = Self::session_module(py)?
                    .getattr("inspect_expr")?
                    .call1((session, expr))?;
                Ok(Inspection {
                    type_name: d.get_item("type_name")?.extract()?,
                    signature: d.get_item("signature")?.extract()?,
                    doc: d.get_item("doc")?.extract()?,
                    file: d.get_item("file")?.extract()?,
                    line: d.get_item("line")?.extract()?,
                    repr: d.get_item("repr")?.extract()?,
                })
            };
            call().map_err(|e| RuntimeError::Python(e.to_string()))
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn an_answer_dropped_unused_says_the_runtime_stopped_and_a_given_one_says_nothing_more() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let record = |heard: &Arc<Mutex<Vec<String>>>| {
            let heard = heard.clone();
            move |r: Result<u8, RuntimeError>| {
                heard.lock().unwrap().push(match r {
                    Ok(v) => format!("ok {v}"),
                    Err(e) => e.to_string(),
                })
            }
        };
        drop(Answer(Some(record(&heard)), std::marker::PhantomData));
        Answer(Some(record(&heard)), std::marker::PhantomData).give(Ok(7));
        assert_eq!(
            *heard.lock().unwrap(),
            vec!["the python runtime has stopped".to_string(), "ok 7".into()]
        );
    }
}
