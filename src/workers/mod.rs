//! The node's Python worker processes: a pool of `push worker` children that run all app
//! code (handlers, evals, daemons, lambdas, loads), so a crash, a stuck C call or a leak in
//! app code costs one worker, never the Raft replica, and Python uses every core.
//!
//! The pool keeps [`PoolConfig::workers`] slots filled ([`supervise`]); each worker holds
//! every version the node serves (loads go to all of them, and a restarted worker gets them
//! replayed). Requests go to the least busy worker; an eval session stays on one worker;
//! daemons and schedules run on the first slot ([`TASKS_SLOT`]); the deploy gate runs in a
//! separate scratch worker whose cluster writes are refused. Workers reach the cluster through
//! their [`link`], which answers their calls with the node's runtime `Cluster` interface.

pub mod debug;
pub mod envs;
pub mod link;
mod pools;
pub mod process;
mod sessions;
pub mod supervise;
mod tasks;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use push_protocol::WorkerRow;
use tokio::process::Child;
use tokio::sync::Notify;

pub use link::{BodySender, HttpCall, HttpEvent, Link};
pub use pools::Env;
pub use sessions::Running;

use crate::runtime::cluster::Cluster;
use crate::runtime::wire::{Done, HttpRequest, Job};
use crate::runtime::{AppState, GATE_TIMEOUT};

/// The slot whose worker runs this node's daemons and schedule firings.
pub const TASKS_SLOT: usize = 0;

/// How long a request waits for a worker when none is up (start-up, all restarting).
const WAIT_FOR_WORKER: Duration = Duration::from_secs(30);

/// Why the pool could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    /// A worker could not be started.
    #[error("cannot start a python worker: {0}")]
    Start(String),
    /// The worker running the job ended (the reason says how).
    #[error("{0}")]
    Lost(String),
    /// No worker came up in time.
    #[error("no python worker is up on this node ({0}); see the node's log, then try again")]
    NoWorker(String),
    /// The job failed in Python (the text says how).
    #[error("{0}")]
    Failed(String),
    /// The node is not attached yet or is shutting down.
    #[error("the python workers are not running: {0}")]
    Stopped(String),
    /// A gate or a job took too long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer from a python worker: {0}")]
    Unexpected(String),
    #[error(
        "session {0} does not exist on this node (closed, or the node restarted); open a new one"
    )]
    NoSession(u64),
    #[error("this node has no python worker w{0}: its workers are w1 to w{1} (see `push status` or :workers)")]
    NoSuchWorker(u32, usize),
    #[error("this node has no python pool {0}: its pools are {1} (see `push status` or :workers)")]
    NoSuchPool(String, String),
}

fn unexpected(done: Done) -> WorkerError {
    WorkerError::Unexpected(format!("{done:?}"))
}

/// How many workers, and what each may use.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Worker processes (`--py-workers`).
    pub workers: usize,
    /// Python threads in each (`--py-threads`).
    pub threads: usize,
    /// Restart a worker whose resident memory passes this (`--py-worker-max-rss`).
    pub max_rss: Option<u64>,
    /// The environment directory its workers put first on `sys.path` (a pool per app
    /// environment has one; the node's main pool none).
    pub env: Option<std::path::PathBuf>,
    /// Where environments are installed (`<data>/envs`).
    pub envs_dir: std::path::PathBuf,
    /// Keep the environments of each app's last this many versions.
    pub keep_envs: usize,
    /// The one app an app pool serves (None: the node's main pool).
    pub owner: Option<String>,
    /// Where workers keep the runtime's compiled modules (`<data>/python-cache`; see
    /// `runtime::code_cache`); None: each worker compiles them.
    pub code_cache: Option<std::path::PathBuf>,
    /// The node's folder of the versions' files, which its workers write once and share
    /// (`process::make_files_dir`); None: each worker keeps its own copies.
    pub files_dir: Option<std::path::PathBuf>,
}

/// A version the node serves, as every worker must hold it.
#[derive(Clone, Debug)]
pub struct LoadedVersion {
    pub number: u64,
    pub files: BTreeMap<String, String>,
    pub entry: String,
}

/// One worker place in the pool.
pub struct Slot {
    index: usize,
    live: RwLock<Option<Arc<Link>>>,
    /// Bumped each time a new worker comes up here (sessions remember it).
    generation: AtomicU64,
    pub restarts: AtomicU64,
    pub last_exit: Mutex<Option<String>>,
    since: Mutex<Option<Instant>>,
}

impl Slot {
    fn link(&self) -> Option<Arc<Link>> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_down(&self) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn label(&self) -> String {
        slot_label(self.index)
    }
}

/// The pool of worker processes.
pub struct Pool {
    /// Unique among the pools of this node (a session's place names its pool).
    id: u64,
    config: PoolConfig,
    slots: Vec<Arc<Slot>>,
    cluster: OnceLock<Arc<dyn Cluster>>,
    stopping: AtomicBool,
    /// Held while versions are loaded into the workers and while a new worker is brought up,
    /// so no worker misses a version.
    load_lock: tokio::sync::Mutex<()>,
    loaded: Mutex<BTreeMap<String, LoadedVersion>>,
    apps: Mutex<BTreeMap<String, AppState>>,
    /// The units placed on this node per app, as last reconciled (replayed to a new tasks worker).
    wanted: Mutex<BTreeMap<String, Vec<(String, u64)>>>,
    sessions: sessions::Sessions,
    python: Mutex<String>,
    up: Notify,
    /// Hot-patches (module, code) made since the last load, replayed to a fresh worker.
    patches: Mutex<Vec<(String, String)>>,
    /// Where the next search for a free worker starts.
    turn: AtomicU64,
    /// A started scratch worker waiting for the next deploy gate.
    spare: tokio::sync::Mutex<Option<(Child, Arc<Link>)>>,
    /// The workers' `sys.prefix` (to find their Python's executable).
    prefix: Mutex<String>,
    /// App -> (environment hash, its pool): apps whose version has dependencies ([`pools`]).
    children: Mutex<BTreeMap<String, (String, Arc<Pool>)>>,
    /// Held while an environment is installed.
    install_lock: tokio::sync::Mutex<()>,
}

impl Pool {
    /// A pool of `config.workers` slots; nothing starts before [`Pool::start`].
    pub fn new(config: PoolConfig) -> Arc<Pool> {
        let slots = (0..config.workers.max(1))
            .map(|index| {
                Arc::new(Slot {
                    index,
                    live: RwLock::new(None),
                    generation: AtomicU64::new(0),
                    restarts: AtomicU64::new(0),
                    last_exit: Mutex::new(None),
                    since: Mutex::new(None),
                })
            })
            .collect();
        static NEXT_POOL: AtomicU64 = AtomicU64::new(1);
        Arc::new(Pool {
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            config,
            slots,
            cluster: OnceLock::new(),
            stopping: AtomicBool::new(false),
            load_lock: tokio::sync::Mutex::new(()),
            loaded: Mutex::new(BTreeMap::new()),
            apps: Mutex::new(BTreeMap::new()),
            wanted: Mutex::new(BTreeMap::new()),
            sessions: sessions::Sessions::default(),
            python: Mutex::new(String::new()),
            up: Notify::new(),
            turn: AtomicU64::new(0),
            patches: Mutex::new(Vec::new()),
            spare: tokio::sync::Mutex::new(None),
            prefix: Mutex::new(String::new()),
            children: Mutex::new(BTreeMap::new()),
            install_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Starts the workers; their calls go to `cluster`. Call from a runtime worker thread.
    pub fn start(self: &Arc<Self>, cluster: Arc<dyn Cluster>) {
        if self.config.owner.is_none() {
            // The node's main pool starts once per node: folders of workers that ended
            // unwatched (the node was killed) go.
            // In the background: the node's start does not wait for it.
            tokio::task::spawn_blocking(|| {
                let removed = process::remove_stale_temps();
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "removed the temporary folders of ended python workers"
                    );
                }
            });
        }
        let _ = self.cluster.set(cluster);
        for index in 0..self.slots.len() {
            tokio::spawn(supervise::keep(self.clone(), index));
        }
    }

    fn cluster(&self) -> Result<Arc<dyn Cluster>, WorkerError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(WorkerError::Stopped("the node is shutting down".into()));
        }
        self.cluster
            .get()
            .cloned()
            .ok_or_else(|| WorkerError::Stopped("the node is still starting".into()))
    }

    /// Brings a fresh worker up to date, then lets requests reach it; says why it could not.
    async fn bring_up(&self, slot: &Slot, link: Arc<Link>) -> Result<(), String> {
        {
            let _loads = self.load_lock.lock().await;
            supervise::replay(self, &link, slot.index).await?;
            *self.python.lock().unwrap_or_else(|p| p.into_inner()) = link.python.clone();
            *self.prefix.lock().unwrap_or_else(|p| p.into_inner()) = link.prefix.clone();
            slot.generation.fetch_add(1, Ordering::Relaxed);
            *slot.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            *slot.live.write().unwrap_or_else(|p| p.into_inner()) = Some(link);
        }
        self.up.notify_waiters();
        Ok(())
    }

    fn loaded_versions(&self) -> BTreeMap<String, LoadedVersion> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn patches(&self) -> Vec<(String, String)> {
        self.patches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn wanted_units(&self) -> BTreeMap<String, Vec<(String, u64)>> {
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn live(&self) -> Vec<(usize, Arc<Link>)> {
        self.slots
            .iter()
            .filter_map(|s| s.link().map(|l| (s.index, l)))
            .collect()
    }

    /// The least busy live worker, waiting up to `wait` for one to come up.
    async fn any(&self, wait: Duration) -> Result<(usize, Arc<Link>), WorkerError> {
        self.any_holding(None, wait).await
    }

    /// The least busy live worker that holds a version of `app` (of any live one while none
    /// does: a node's workers load a version side by side, and one still importing it would
    /// answer that the app is not running), waiting up to `wait` for one to come up.
    async fn any_holding(
        &self,
        app: Option<&str>,
        wait: Duration,
    ) -> Result<(usize, Arc<Link>), WorkerError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.up.notified();
            // Ties go round the slots, so idle workers take turns.
            let mut live = self.live();
            if let Some(app) = app {
                let holding: Vec<(usize, Arc<Link>)> =
                    live.iter().filter(|(_, l)| l.holds(app)).cloned().collect();
                if !holding.is_empty() {
                    live = holding;
                }
            }
            let start = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
            let best = (0..live.len())
                .map(|i| &live[(start + i) % live.len()])
                .min_by_key(|(_, l)| l.inflight.load(Ordering::Relaxed));
            if let Some(best) = best {
                return Ok(best.clone());
            }
            self.cluster()?;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WorkerError::NoWorker(self.why_none()));
            }
        }
    }

    /// The worker of slot `index`, waiting up to `wait` for it.
    async fn slot(&self, index: usize, wait: Duration) -> Result<Arc<Link>, WorkerError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.up.notified();
            if let Some(link) = self.slots.get(index).and_then(|s| s.link()) {
                return Ok(link);
            }
            self.cluster()?;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WorkerError::NoWorker(self.why_none()));
            }
        }
    }

    fn why_none(&self) -> String {
        let exits: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| {
                let last = s
                    .last_exit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                last.map(|e| format!("{} last {e}", s.label()))
            })
            .collect();
        if exits.is_empty() {
            "still starting".into()
        } else {
            exits.join("; ")
        }
    }

    /// Loads a version into every worker and makes it the one this node serves.
    pub async fn load(
        &self,
        app: &str,
        number: u64,
        files: BTreeMap<String, String>,
        entry: String,
    ) -> Result<(), WorkerError> {
        self.any(WAIT_FOR_WORKER).await?;
        let _loads = self.load_lock.lock().await;
        let job = Job::Load {
            app: app.to_string(),
            number,
            files: files.clone(),
            entry: entry.clone(),
        };
        let links = self.live();
        let answers =
            crate::join::concurrently(links.iter().map(|(_, l)| l.job(job.clone()))).await;
        let mut refusal = None;
        let mut reached = 0;
        for ((_, link), answer) in links.iter().zip(answers) {
            match answer {
                Ok(Done::Refusal(None)) => {
                    link.hold(app);
                    reached += 1
                }
                Ok(Done::Refusal(Some(why))) => refusal = Some(why),
                Ok(other) => refusal = Some(unexpected(other).to_string()),
                // A worker that died meanwhile gets the version replayed when it restarts.
                Err(WorkerError::Lost(_)) => {}
                Err(e) => refusal = Some(e.to_string()),
            }
        }
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let state = apps.entry(app.to_string()).or_default();
        match refusal {
            Some(why) => {
                state.error = Some((number, why.clone()));
                Err(WorkerError::Failed(why))
            }
            None if reached == 0 => {
                let why = "every python worker ended while loading it".to_string();
                state.error = Some((number, why.clone()));
                Err(WorkerError::Failed(why))
            }
            None => {
                state.serving = Some(number);
                state.error = None;
                // A new version replaces the modules the patches were made in.
                self.patches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                self.loaded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        app.to_string(),
                        LoadedVersion {
                            number,
                            files,
                            entry,
                        },
                    );
                Ok(())
            }
        }
    }

    /// Load state per app on this node.
    pub fn apps(&self) -> BTreeMap<String, AppState> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        apps.extend(self.child_apps());
        apps
    }

    /// The deploy gate, in a scratch worker of its own (killed afterwards): compiles every
    /// module and imports the entry, with `env`'s packages first on `sys.path` when the
    /// version has dependencies; the import's cluster writes are refused.
    pub async fn gate(
        self: &Arc<Self>,
        app: &str,
        number: u64,
        files: BTreeMap<String, String>,
        entry: String,
        env: Option<&std::path::Path>,
    ) -> Result<Option<String>, WorkerError> {
        let taken = match env {
            Some(_) => None,
            None => self.spare.lock().await.take(),
        };
        // The next gate's scratch worker starts now, beside this gate, not after it: a
        // worker takes 50-100 ms to start here, several times a gate's own time, so deploys
        // in a row waited for it.
        tokio::spawn(prepare_spare(self.clone()));
        let (mut child, link) = match taken {
            Some((mut child, link)) => match child.try_wait() {
                Ok(None) => (child, link),
                _ => supervise::start(self, "gate", true).await?,
            },
            _ => supervise::start_in(self, "gate", true, env).await?,
        };
        let job = Job::Gate {
            app: app.to_string(),
            number,
            files,
            entry,
        };
        let answer = tokio::time::timeout(GATE_TIMEOUT, link.job(job)).await;
        let _ = child.start_kill();
        let pid = link.pid;
        tokio::spawn(async move {
            let _ = child.wait().await;
            process::remove_temp(pid);
        });
        match answer {
            Err(_) => Err(WorkerError::Timeout(GATE_TIMEOUT)),
            Ok(Ok(Done::Refusal(refusal))) => Ok(refusal),
            Ok(Ok(other)) => Err(unexpected(other)),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Starts one HTTP request on the least busy worker (of the app's own pool when its
    /// version has an environment).
    pub async fn http(&self, request: HttpRequest) -> Result<HttpCall, WorkerError> {
        if let Some(pool) = self.child(&request.app) {
            return Box::pin(pool.http(request)).await;
        }
        let (_, link) = self
            .any_holding(Some(&request.app), WAIT_FOR_WORKER)
            .await?;
        Ok(link.http(Job::Http(request)))
    }

    /// The running interpreter's version ("3.11.7"), as the workers report it.
    pub fn python_version(&self) -> String {
        self.python
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Each worker's row for `push status`, `push top` and `/metrics`.
    pub fn rows(&self) -> Vec<WorkerRow> {
        let mut rows = self.rows_of(&self.sessions);
        rows.extend(self.child_rows());
        rows
    }

    /// This pool's rows, with the sessions `registry` places on its workers.
    fn rows_of(&self, registry: &sessions::Sessions) -> Vec<WorkerRow> {
        self.slots
            .iter()
            .map(|slot| {
                let link = slot.link();
                let usage = link
                    .as_ref()
                    .map(|l| crate::procstat::of_pid(l.pid))
                    .unwrap_or_default();
                let since = *slot.since.lock().unwrap_or_else(|p| p.into_inner());
                WorkerRow {
                    slot: slot.index as u32 + 1,
                    pid: link.as_ref().map_or(0, |l| l.pid),
                    up: link.is_some(),
                    busy: link
                        .as_ref()
                        .map_or(0, |l| l.inflight.load(Ordering::Relaxed) as u32),
                    rss_bytes: usage.rss_bytes,
                    cpu_ms: usage.cpu_ms,
                    restarts: slot.restarts.load(Ordering::Relaxed),
                    uptime_ms: since
                        .filter(|_| link.is_some())
                        .map_or(0, |s| s.elapsed().as_millis() as u64),
                    last_exit: slot
                        .last_exit
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                    sessions: registry.ids_on(self.id, slot.index),
                    tasks: slot.index == TASKS_SLOT,
                    pool: None,
                }
            })
            .collect()
    }

    /// Kills the worker of slot `index` (its supervisor starts a new one).
    fn kill(&self, index: usize) {
        if let Some(link) = self.slots.get(index).and_then(|s| s.link()) {
            // SAFETY: kill(2) on our own child's pid; the child is reaped only by its
            // supervisor, so the pid cannot have been reused while the link is live.
            unsafe {
                libc::kill(link.pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Starts a scratch worker for the next deploy gate, unless one is waiting (after a node's
/// first gate, so a node that never gates a deploy runs no spare).
async fn prepare_spare(pool: Arc<Pool>) {
    let mut spare = pool.spare.lock().await;
    if spare.is_some() || pool.stopping.load(Ordering::Relaxed) {
        return;
    }
    match supervise::start(&pool, "gate", true).await {
        Ok(started) => *spare = Some(started),
        Err(e) => tracing::warn!("cannot prepare a scratch worker for the deploy gate: {e}"),
    }
}

/// Slots by label, for `:use` and messages: "w1" is slot 0.
pub fn slot_label(index: usize) -> String {
    format!("w{}", index + 1)
}
