//! The embedded Python runtime: owns the interpreter and the threads Python runs on.
//!
//! **Architecture Invariant:** Python never runs on a tokio worker. Callers send a job to a
//! pool of dedicated Python threads and await its answer; the GIL is taken inside the job and
//! released before any network wait (`_push_native` calls go through `Python::detach`).
//!
//! Layout: `bootstrap.py` (import hook, version loading, request dispatch), `postmortem.py`
//! (failures kept for `:pm`, call tracing; [`debug`] is its Rust half) and `push.py` (the
//! app-facing `push` module) are embedded Python; [`native`] is the Rust half of `push`;
//! [`convert`] maps `Value`s to Python objects; [`cluster`] is the interface through which
//! Python reaches the cluster (handed in at assembly, so the runtime imports no node).

pub mod cluster;
pub mod code_cache;
pub mod convert;
pub mod debug;
pub mod eval;
pub mod exchange;
pub mod native;
pub mod outbox;
pub mod tasks;
pub mod wire;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tokio::sync::oneshot;

/// How long a deploy gate may take to import the entry module.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Stack size of every thread that runs Python (pool, eval, lambda, and threads Python code
/// starts, through `threading.stack_size`). CPython's recursion limit guards the C stack only
/// as far as this stack is deep: 256 MiB of address space (touched pages only become memory)
/// leaves about 5 KiB per level at [`MAX_RECURSION`].
pub const PY_STACK: usize = 256 << 20;

/// The environment variable naming the directory of installed packages a worker puts first
/// on `sys.path` (set by the node for the workers of an app's environment).
pub const ENV_DIR_VAR: &str = "PUSH_ENV_DIR";

/// The environment variable naming the node's folder of the versions' files, which its
/// workers share (see `files.py`).
pub const FILES_DIR_VAR: &str = "PUSH_FILES_DIR";

/// The environment variable naming the one app whose pool a worker is in (set by the node for
/// the workers of an app pool): only there do the app's secrets and config reach `os.environ`.
pub const POOL_APP_VAR: &str = "PUSH_POOL_APP";

/// The highest recursion limit app code may set: `sys.setrecursionlimit` above it is capped
/// (with a note on stderr), so `sys.setrecursionlimit(10**6)` and a deep recursion end in a
/// RecursionError instead of a C stack overflow that would abort the node.
pub const MAX_RECURSION: u32 = 50_000;

type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// Why the runtime could not do something.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("python failed to start: {0}")]
    Start(String),
    #[error("the python runtime has stopped")]
    Stopped,
    #[error("{0}")]
    Python(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Why a version's files cannot be loaded (or gated): the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("push.ron: {0}")]
    Manifest(String),
    #[error(transparent)]
    File(#[from] crate::model::code_store::FileError),
    #[error("{0} is not UTF-8 text")]
    NotUtf8(String),
    /// The version's own code failed to import (with its traceback).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

pub use wire::{HttpRequest, HttpResponse};

/// `handle_http`'s return value: status, headers, body, version, traceback, streamed.
type HandlerTuple = (
    u16,
    HashMap<String, String>,
    Vec<u8>,
    Option<u64>,
    Option<String>,
    bool,
);

/// What a request's thread reports once its route is known: the route's timeout (seconds)
/// and the thread's ident (to interrupt it past that timeout).
pub type RouteStart = (Option<f64>, u64);

/// The `on_route` callback handed to `handle_http`: passes [`RouteStart`] to the caller.
#[pyclass]
struct OnRoute(Mutex<Option<oneshot::Sender<RouteStart>>>);

#[pymethods]
impl OnRoute {
    fn __call__(&self, timeout: Option<f64>, ident: u64) {
        if let Some(tx) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send((timeout, ident));
        }
    }
}

/// Per-app load state on this node, for `push status`.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    pub serving: Option<u64>,
    pub error: Option<(u64, String)>,
}

/// Runs jobs on the calling thread, which keeps one Python thread state for its whole life and
/// lets the GIL go only while `next` waits for the next job (None ends the thread): a job then
/// costs no thread-state set-up. Used by the pool's threads and the eval threads.
fn run_jobs(mut next: impl FnMut() -> Option<Job> + Send) {
    Python::attach(|py| {
        while let Some(job) = py.detach(&mut next) {
            job(py);
            clear_interrupt(py);
        }
    })
}

/// Drops an interrupt aimed at this thread that arrived after its job ended (a timeout or a
/// Ctrl-C racing the job's return), so it cannot land in the thread's next job.
fn clear_interrupt(py: Python<'_>) {
    let _ = py;
    // SAFETY: the GIL is held (`py`); a null exception only clears what is pending for the
    // calling thread's own id.
    unsafe {
        pyo3::ffi::PyThreadState_SetAsyncExc(
            pyo3::ffi::PyThread_get_thread_ident() as _,
            std::ptr::null_mut(),
        );
    }
}

/// Handle to the interpreter and its thread pool.
pub struct Runtime {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Shared so callers clone it without touching the GIL.
    bootstrap: Arc<Py<PyModule>>,
    apps: Mutex<BTreeMap<String, AppState>>,
    /// The running interpreter's version, e.g. "3.11.7".
    python_version: String,
}

impl Runtime {
    /// Starts CPython and `threads` Python worker threads.
    pub fn start(threads: usize) -> Result<Arc<Runtime>, RuntimeError> {
        Python::initialize();
        let (bootstrap, python_version) =
            Python::attach(|py| -> PyResult<(Py<PyModule>, String)> {
                let sys = py.import("sys")?;
                let modules = sys.getattr("modules")?;
                // A worker of an app's environment finds its packages first (see
                // `workers::envs`); the node sets the variable only for those workers.
                if let Some(env) = std::env::var_os(ENV_DIR_VAR) {
                    sys.getattr("path")?
                        .call_method1("insert", (0, env.to_string_lossy().to_string()))?;
                }
                modules.set_item("_push_native", native::module(py)?)?;
                let boot = code_cache::run_modules(py)?;
                boot.getattr("guard_recursion")?
                    .call1((MAX_RECURSION, PY_STACK))?;
                // A fatal signal in C code (a segfault in an extension, an abort) prints the
                // Python traceback of every thread to stderr, which is the node's log.
                py.run(
                    c"import faulthandler; faulthandler.enable(all_threads=True)",
                    None,
                    None,
                )?;
                let version = boot.getattr("PYTHON")?.extract::<String>()?;
                Ok((boot.unbind(), version))
            })
            .map_err(|e| RuntimeError::Start(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("python-{i}"))
                .stack_size(PY_STACK)
                .spawn(move || {
                    run_jobs(|| rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok())
                })
                .map_err(|e| RuntimeError::Start(e.to_string()))?;
        }
        Ok(Arc::new(Runtime {
            jobs: Mutex::new(tx),
            bootstrap: Arc::new(bootstrap),
            apps: Mutex::new(BTreeMap::new()),
            python_version,
        }))
    }

    /// Runs `f` on a Python thread with the GIL held and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Python<'_>) -> T + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |py| {
            let _ = tx.send(f(py));
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    async fn call_bootstrap(
        &self,
        name: &'static str,
        app: String,
        number: u64,
        files: BTreeMap<String, String>,
        entry: String,
    ) -> Result<Option<String>, RuntimeError> {
        let boot = self.bootstrap.clone();
        // Checked by the gate already; a version that slipped past it fails its load here.
        let web = match web_app(&files) {
            Ok(web) => web.map(|(kind, module, attr)| (kind.name(), module, attr)),
            Err(e) => return Ok(Some(e.to_string())),
        };
        self.run(move |py| -> Result<Option<String>, RuntimeError> {
            let result = boot
                .bind(py)
                .getattr(name)
                .and_then(|f| f.call1((app, number, files, entry, web)))
                .and_then(|r| r.extract::<Option<String>>());
            result.map_err(|e| RuntimeError::Python(e.to_string()))
        })
        .await?
    }

    /// The deploy gate: compile every module, import the entry in a scratch namespace.
    /// `Ok(Some(msg))` is a rejection saying what failed, with file and line.
    pub async fn gate(
        &self,
        app: &str,
        number: u64,
        files: BTreeMap<String, String>,
        entry: String,
    ) -> Result<Option<String>, RuntimeError> {
        let fut = self.call_bootstrap("gate", app.to_string(), number, files, entry);
        tokio::time::timeout(GATE_TIMEOUT, fut)
            .await
            .map_err(|_| RuntimeError::Timeout(GATE_TIMEOUT))?
    }

    /// Loads a version and makes it the one this node serves; records the outcome.
    pub async fn load(
        &self,
        app: &str,
        number: u64,
        files: BTreeMap<String, String>,
        entry: String,
    ) -> Result<(), LoadError> {
        let outcome = self
            .call_bootstrap("load", app.to_string(), number, files, entry)
            .await;
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let state = apps.entry(app.to_string()).or_default();
        match outcome {
            Ok(None) => {
                state.serving = Some(number);
                state.error = None;
                Ok(())
            }
            Ok(Some(message)) => {
                state.error = Some((number, message.clone()));
                Err(LoadError::Failed(message))
            }
            Err(e) => {
                state.error = Some((number, e.to_string()));
                Err(LoadError::Runtime(e))
            }
        }
    }

    /// Load state per app on this node.
    pub fn apps(&self) -> BTreeMap<String, AppState> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs the handler for one HTTP request. `started` learns the route's timeout and the
    /// thread running it once the route is matched (not for 404s and 405s); `exchange` carries
    /// the rest of the body in and a streamed answer out.
    pub async fn http(
        &self,
        req: HttpRequest,
        started: Option<oneshot::Sender<RouteStart>>,
        exchange: exchange::Exchange,
    ) -> Result<HttpResponse, RuntimeError> {
        let boot = self.bootstrap.clone();
        self.run(move |py| -> Result<HttpResponse, RuntimeError> {
            let call = || -> PyResult<HttpResponse> {
                let query = PyDict::new(py);
                for (k, v) in &req.query {
                    query.set_item(k, v)?;
                }
                let headers = PyDict::new(py);
                for (k, v) in &req.headers {
                    headers.set_item(k, v)?;
                }
                let body = PyBytes::new(py, &req.body);
                let on_route = match started {
                    Some(tx) => Some(Py::new(py, OnRoute(Mutex::new(Some(tx))))?),
                    None => None,
                };
                let result = boot.bind(py).getattr("handle_http")?.call1((
                    req.app.as_str(),
                    req.pinned,
                    req.method.as_str(),
                    req.path.as_str(),
                    query,
                    headers,
                    body,
                    on_route,
                    Py::new(py, exchange)?,
                    (
                        req.more,
                        req.query_string.as_str(),
                        req.client.as_str(),
                        req.server.as_str(),
                    ),
                ))?;
                let (status, headers, body, version, error, streamed): HandlerTuple =
                    result.extract()?;
                Ok(HttpResponse {
                    status,
                    headers,
                    body: body.into(),
                    version,
                    error,
                    streamed,
                })
            };
            call().map_err(|e| RuntimeError::Python(e.to_string()))
        })
        .await?
    }

    /// Ends the lifespan of the ASGI apps this worker runs (it is stopping), within 10 s.
    pub async fn shutdown_apps(&self) {
        let boot = self.bootstrap.clone();
        let stop = self.run(move |py| {
            if let Err(e) = boot
                .bind(py)
                .getattr("shutdown_all")
                .and_then(|f| f.call0())
            {
                tracing::warn!("ending the ASGI apps' lifespans: {e}");
            }
        });
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stop).await;
    }

    /// Raises KeyboardInterrupt in the Python thread `ident` (a handler past its timeout).
    /// Says whether such a thread existed.
    pub fn interrupt_thread(ident: u64) -> bool {
        Python::attach(|py| {
            py.import("_push_session")
                .and_then(|m| {
                    m.getattr("interrupt_thread")?
                        .call1((ident,))?
                        .extract::<bool>()
                })
                .unwrap_or(false)
        })
    }

    /// The running interpreter's version ("3.11.7"), for `push status` and the REPL banner.
    pub fn python_version(&self) -> &str {
        &self.python_version
    }

    /// The interpreter's `sys.version` and `sys.prefix`.
    pub fn python_info() -> (String, String) {
        Python::attach(|py| {
            let sys = py.import("sys");
            let get = |name: &str| -> String {
                sys.as_ref()
                    .ok()
                    .and_then(|s| s.getattr(name).ok())
                    .and_then(|v| v.extract::<String>().ok())
                    .unwrap_or_default()
            };
            (get("version"), get("prefix"))
        })
    }
}

/// A version's `push.ron`: `(entry: "main")`, `(wsgi: "web:app")` or `(asgi: "api:app")`.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Manifest {
    entry: Option<String>,
    wsgi: Option<String>,
    asgi: Option<String>,
}

/// The kind of web app `push.ron` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebKind {
    Wsgi,
    Asgi,
}

impl WebKind {
    pub fn name(self) -> &'static str {
        match self {
            WebKind::Wsgi => "wsgi",
            WebKind::Asgi => "asgi",
        }
    }
}

fn manifest(files: &BTreeMap<String, String>) -> Result<Manifest, LoadError> {
    match files.get("push.ron") {
        Some(text) => ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(text)
            .map_err(|e| LoadError::Manifest(e.to_string())),
        None => Ok(Manifest::default()),
    }
}

/// Whether `name` is a dotted Python name (`web.api`).
fn dotted(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        })
}

/// The WSGI or ASGI callable `push.ron` names, as (kind, module, attribute).
pub fn web_app(
    files: &BTreeMap<String, String>,
) -> Result<Option<(WebKind, String, String)>, LoadError> {
    let m = manifest(files)?;
    let (kind, target) = match (m.wsgi, m.asgi) {
        (Some(_), Some(_)) => {
            return Err(LoadError::Manifest(
                "names both a wsgi and an asgi app; keep the one your framework is (Flask: wsgi, FastAPI: asgi)".into(),
            ))
        }
        (Some(t), None) => (WebKind::Wsgi, t),
        (None, Some(t)) => (WebKind::Asgi, t),
        (None, None) => return Ok(None),
    };
    match target.split_once(':') {
        Some((module, attr)) if dotted(module) && dotted(attr) => {
            Ok(Some((kind, module.to_string(), attr.to_string())))
        }
        _ => Err(LoadError::Manifest(format!(
            "{}: {target:?} is not \"module:attribute\"; write it like ({}: \"web:app\") for the `app` in web.py",
            kind.name(),
            kind.name()
        ))),
    }
}

/// The entry module of a version: `push.ron`'s `entry`, else the module of its WSGI/ASGI
/// app, else `app`.
pub fn entry_module(files: &BTreeMap<String, String>) -> Result<String, LoadError> {
    let web = web_app(files)?;
    let m = manifest(files)?;
    Ok(m.entry
        .or(web.map(|(_, module, _)| module))
        .unwrap_or_else(|| "app".into()))
}

/// The key prefix, in a version's files as workers get them, of a binary file: `LINK + path`
/// maps to the node's blob file of it, which the worker links into the version's folder (a
/// binary file is never held as a string). Must match `LINK` in `files.py`; no app path
/// holds a NUL.
pub const LINK: &str = "\0link:";

/// Decodes a version's text files as UTF-8 source: every `.py` module (a non-UTF-8 one is
/// refused by name) and every other file that is text; binary files are left out.
pub fn sources(
    files: BTreeMap<String, push_protocol::ByteBuf>,
) -> Result<BTreeMap<String, String>, LoadError> {
    files
        .into_iter()
        .filter(|(path, bytes)| crate::model::code_store::is_text(path, bytes))
        .map(|(path, bytes)| {
            crate::model::code_store::check_source(&path, &bytes)?;
            String::from_utf8(bytes.into_vec())
                .map(|s| (path.clone(), s))
                .map_err(|_| LoadError::NotUtf8(path.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_from_manifest() {
        let mut files = BTreeMap::new();
        assert_eq!(entry_module(&files).unwrap(), "app");
        files.insert("push.ron".to_string(), "(entry: \"web.main\")".to_string());
        assert_eq!(entry_module(&files).unwrap(), "web.main");
        files.insert(
            "push.ron".to_string(),
            "(wsgi: \"site.web:app\")".to_string(),
        );
        assert_eq!(entry_module(&files).unwrap(), "site.web");
        let web = web_app(&files).unwrap().unwrap();
        assert_eq!(web, (WebKind::Wsgi, "site.web".into(), "app".into()));
        for bad in [
            "(wsgi: \"web\")",
            "(asgi: \"web:\")",
            "(asgi: \"1web:app\")",
        ] {
            files.insert("push.ron".to_string(), bad.to_string());
            let e = web_app(&files).unwrap_err().to_string();
            assert!(e.contains("module:attribute"), "{e}");
        }
        files.insert(
            "push.ron".to_string(),
            "(wsgi: \"a:b\", asgi: \"a:b\")".to_string(),
        );
        assert!(web_app(&files).unwrap_err().to_string().contains("both"));
        files.insert("push.ron".to_string(), "(entry: 3)".to_string());
        assert!(entry_module(&files)
            .unwrap_err()
            .to_string()
            .contains("push.ron"));
    }
}
