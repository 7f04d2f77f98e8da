//! Live evaluation on the pool: each eval session lives on one worker (its names are that
//! worker's); an eval without a session goes to the least busy worker. A session whose
//! worker restarted moves to a live one, saying its names are gone. A hot-patch (an eval in a
//! module) reaches every worker of the node, and says how many. Ctrl-C interrupts as in one
//! process; an eval still running 2 s later is reported, and a second Ctrl-C then restarts
//! its worker.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use push_protocol::{EvalResult, Inspection, PyException, Stream};
use tokio::sync::{mpsc, oneshot};

use super::link::Output;
use super::{slot_label, unexpected, Link, Pool, WorkerError, WAIT_FOR_WORKER};
use crate::runtime::wire::{Done, Job};

/// A pool's name in messages: "the main python pool" or "app APP's python pool".
fn pool_name(app: Option<&str>) -> String {
    match app {
        Some(app) => format!("app {app}'s python pool (its dependencies importable)"),
        None => "the node's main python pool".to_string(),
    }
}

/// How long after a Ctrl-C an eval may run before a second one restarts its worker.
pub const STUCK_AFTER: Duration = Duration::from_secs(2);

/// A started evaluation: its output chunks as they are printed, then its result.
pub type Running = (Output, oneshot::Receiver<Result<EvalResult, WorkerError>>);

/// An eval's answer for a session this node does not know: a `LookupError` as Python's own
/// would read, which clients (the LSP, the REPL) recognise and open a new session for.
fn no_session(session: u64, node: u64) -> EvalResult {
    let message = format!(
        "session {session} does not exist on this node (closed, or the node restarted); open a new one"
    );
    EvalResult {
        value: None,
        type_name: None,
        error: Some(PyException {
            type_name: "LookupError".into(),
            formatted: format!("LookupError: {message}\n"),
            message,
            frames: Vec::new(),
        }),
        truncated: None,
        micros: 0,
        node,
    }
}

/// Where a session lives: its pool (the main pool, or the pool of `app`), the slot, which
/// worker of it (generation), its id there.
#[derive(Clone, Debug)]
pub struct Place {
    pool: u64,
    app: Option<String>,
    pub slot: usize,
    generation: u64,
    sid: u64,
}

#[derive(Default)]
struct Inner {
    next: u64,
    places: HashMap<u64, Place>,
    /// Sessions with an eval running: when it was first interrupted (if it was), and whether
    /// the client was told it has not stopped.
    running: HashMap<u64, (Option<Instant>, bool)>,
}

/// The pool's sessions.
#[derive(Default)]
pub struct Sessions(Mutex<Inner>);

impl Sessions {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn place(&self, session: u64) -> Option<Place> {
        self.inner().places.get(&session).cloned()
    }

    pub fn on_slot(&self, pool: u64, slot: usize) -> usize {
        self.inner()
            .places
            .values()
            .filter(|p| p.pool == pool && p.slot == slot)
            .count()
    }

    /// The sessions living on `slot` of pool `pool`.
    pub fn ids_on(&self, pool: u64, slot: usize) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .inner()
            .places
            .iter()
            .filter(|(_, p)| p.pool == pool && p.slot == slot)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn add(&self, place: Place) -> u64 {
        let mut inner = self.inner();
        inner.next += 1;
        let id = inner.next;
        inner.places.insert(id, place);
        id
    }
}

impl Pool {
    fn current(&self, place: &Place) -> Option<Arc<Link>> {
        if place.pool != self.id {
            return None;
        }
        let slot = self.slots.get(place.slot)?;
        (slot.generation.load(Ordering::Relaxed) == place.generation)
            .then(|| slot.link())
            .flatten()
    }

    /// The pool a session's place is in: its app's pool while that serves the app, else
    /// this (main) pool.
    fn pool_of(self: &Arc<Self>, place: &Place) -> Arc<Pool> {
        place
            .app
            .as_deref()
            .and_then(|app| self.child(app))
            .unwrap_or_else(|| self.clone())
    }

    /// Opens a session on a live worker (the one with fewest sessions in `registry`) at slot
    /// `prefer` if given; `app` names the app whose pool this is (None: the main pool).
    async fn open_on(
        &self,
        prefer: Option<usize>,
        registry: &Sessions,
        app: Option<String>,
    ) -> Result<Place, WorkerError> {
        let (slot, link) = match prefer.and_then(|i| self.slots.get(i)?.link().map(|l| (i, l))) {
            Some(found) => found,
            None => {
                self.any(WAIT_FOR_WORKER).await?;
                self.live()
                    .into_iter()
                    .min_by_key(|(i, _)| registry.on_slot(self.id, *i))
                    .ok_or_else(|| WorkerError::NoWorker(self.why_none()))?
            }
        };
        let generation = self.slots[slot].generation.load(Ordering::Relaxed);
        match link.job(Job::OpenSession).await? {
            Done::Session(sid) => Ok(Place {
                pool: self.id,
                app,
                slot,
                generation,
                sid,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Opens an eval session; its id is the node's.
    pub async fn open_session(&self) -> Result<u64, WorkerError> {
        let place = self.open_on(None, &self.sessions, None).await?;
        Ok(self.sessions.add(place))
    }

    /// Opens an eval session on worker `worker` (1-based) of pool `pool` (None: the main
    /// pool; else an app's name or "APP/ENV" as `push status` shows it), waiting for it if it
    /// is restarting.
    pub async fn open_session_on(
        self: &Arc<Self>,
        worker: u32,
        pool: Option<&str>,
    ) -> Result<u64, WorkerError> {
        let (pool, app) = self.named_pool(pool)?;
        let index = (worker as usize).wrapping_sub(1);
        if index >= pool.slots.len() {
            return Err(WorkerError::NoSuchWorker(worker, pool.slots.len()));
        }
        pool.slot(index, WAIT_FOR_WORKER).await?;
        let place = pool.open_on(Some(index), &self.sessions, app).await?;
        Ok(self.sessions.add(place))
    }

    /// Closes a session; says whether it existed.
    pub async fn close_session(self: &Arc<Self>, session: u64) -> Result<bool, WorkerError> {
        let place = {
            let mut inner = self.sessions.inner();
            inner.running.remove(&session);
            inner.places.remove(&session)
        };
        let Some(place) = place else {
            return Ok(false);
        };
        if let Some(link) = self.pool_of(&place).current(&place) {
            let _ = link.job(Job::CloseSession { session: place.sid }).await;
        }
        Ok(true)
    }

    /// The session's pool and worker; a session whose worker restarted moves to a live one
    /// (the note says so), and so does a session that evaluates in a module of an app served
    /// by another pool (`to`: Some(app) for an app pool, Some(None) for the main pool).
    async fn session_link(
        self: &Arc<Self>,
        session: u64,
        to: Option<Option<String>>,
    ) -> Result<(Arc<Pool>, Place, Arc<Link>, Option<String>), WorkerError> {
        let place = self
            .sessions
            .place(session)
            .ok_or(WorkerError::NoSession(session))?;
        let pool = self.pool_of(&place);
        let moving = to.as_ref().filter(|app| **app != place.app);
        if moving.is_none() {
            if let Some(link) = pool.current(&place) {
                return Ok((pool, place, link, None));
            }
        }
        let app = moving.cloned().unwrap_or_else(|| place.app.clone());
        let target = match &app {
            Some(name) => self.child(name).unwrap_or_else(|| self.clone()),
            None => self.clone(),
        };
        let app = app.filter(|_| !Arc::ptr_eq(&target, self));
        let moved = target.open_on(None, &self.sessions, app.clone()).await?;
        self.sessions.inner().places.insert(session, moved.clone());
        let link = target
            .current(&moved)
            .ok_or_else(|| WorkerError::NoWorker(target.why_none()))?;
        let note = match moving {
            Some(_) => {
                if let Some(old) = pool.current(&place) {
                    let _ = old.job(Job::CloseSession { session: place.sid }).await;
                }
                format!(
                    "(this session moved to {}, where that module lives: names defined in it before are gone)\n",
                    pool_name(app.as_deref())
                )
            }
            None => format!(
                "(python worker {} that held this session restarted: names defined before are gone; now on {})\n",
                slot_label(place.slot),
                slot_label(moved.slot)
            ),
        };
        Ok((target, moved, link, Some(note)))
    }

    /// Starts an evaluation: output chunks arrive while it runs, then its result.
    pub fn eval(
        self: &Arc<Self>,
        session: Option<u64>,
        code: String,
        module: Option<String>,
        node: u64,
    ) -> Running {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (done, done_rx) = oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            let result = pool.run_eval(session, code, module, node, &out).await;
            if let Some(s) = session {
                pool.sessions.inner().running.remove(&s);
            }
            let _ = done.send(result);
        });
        (out_rx, done_rx)
    }

    async fn run_eval(
        self: &Arc<Self>,
        session: Option<u64>,
        code: String,
        module: Option<String>,
        node: u64,
        out: &mpsc::UnboundedSender<(Stream, String)>,
    ) -> Result<EvalResult, WorkerError> {
        // An eval in a module runs in the pool of the module's app (its own pool when the
        // app has dependencies), and a session evaluating there moves with it.
        let module_app = module
            .as_deref()
            .map(|m| self.app_of_module(m).map(|(app, _)| app));
        let (pool, slot, link, sid) = match session {
            Some(session) => {
                let (pool, place, link, note) =
                    match self.session_link(session, module_app.clone()).await {
                        Err(WorkerError::NoSession(_)) => return Ok(no_session(session, node)),
                        other => other?,
                    };
                if let Some(note) = note {
                    let _ = out.send((Stream::Stderr, note));
                }
                self.sessions.inner().running.insert(session, (None, false));
                (pool, place.slot, link, Some(place.sid))
            }
            None => {
                let pool = module_app
                    .flatten()
                    .and_then(|app| self.child(&app))
                    .unwrap_or_else(|| self.clone());
                let (slot, link) = pool.any(WAIT_FOR_WORKER).await?;
                (pool, slot, link, None)
            }
        };
        // A hot-patch holds the load lock: a worker coming up meanwhile gets it replayed.
        let _patching = match module {
            Some(_) => Some(pool.load_lock.lock().await),
            None => None,
        };
        let job = Job::Eval {
            session: sid,
            code,
            module: module.clone(),
            node,
        };
        let (mut output, mut done) = link.eval(job);
        let mut warned = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let answer = loop {
            tokio::select! {
                chunk = output.recv() => match chunk {
                    Some(chunk) => { let _ = out.send(chunk); }
                    None => break (&mut done).await,
                },
                answer = &mut done => break answer,
                _ = tick.tick(), if !warned && session.is_some() => {
                    let stuck = session.is_some_and(|s| {
                        let mut inner = self.sessions.inner();
                        match inner.running.get_mut(&s) {
                            Some((Some(at), told)) if at.elapsed() >= STUCK_AFTER => {
                                *told = true;
                                true
                            }
                            _ => false,
                        }
                    });
                    if stuck {
                        warned = true;
                        let _ = out.send((Stream::Stderr, format!(
                            "{} {} s after Ctrl-C (blocked in C code?); press Ctrl-C again to restart python worker {} on node {node} (this session's names will be lost)\n",
                            push_protocol::EVAL_STUCK_NOTICE, STUCK_AFTER.as_secs(), slot_label(slot)
                        )));
                    }
                }
            }
        };
        while let Ok(chunk) = output.try_recv() {
            let _ = out.send(chunk);
        }
        let result = match answer {
            Ok(Ok(Done::Eval(result, patch))) => (result, patch),
            Ok(Ok(Done::Failed(text))) => return Err(WorkerError::Failed(text)),
            Ok(Ok(other)) => return Err(unexpected(other)),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(WorkerError::Lost("the worker's link closed".into())),
        };
        let (result, patch) = result;
        if let (Some(module), None, Some(patch)) = (&module, &result.error, patch) {
            pool.patches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((module.clone(), patch.clone()));
            pool.patch_others(slot, module, &patch, node, out).await;
        }
        Ok(result)
    }

    /// Applies a hot-patch (an eval in `module`) on every other live worker, so every request
    /// sees it; reports how many it reached when there is more than one.
    async fn patch_others(
        &self,
        done_on: usize,
        module: &str,
        code: &str,
        node: u64,
        out: &mpsc::UnboundedSender<(Stream, String)>,
    ) {
        if self.slots.len() < 2 {
            return;
        }
        let others: Vec<Arc<Link>> = self
            .live()
            .into_iter()
            .filter(|(i, _)| *i != done_on)
            .map(|(_, l)| l)
            .collect();
        let answers = crate::join::concurrently(others.iter().map(|link| {
            let job = Job::Eval {
                session: None,
                code: code.to_string(),
                module: Some(module.to_string()),
                node,
            };
            let (_output, done) = link.eval(job);
            done
        }))
        .await;
        let mut reached = 1;
        let mut missed = Vec::new();
        for answer in answers {
            match answer {
                Ok(Ok(Done::Eval(r, _))) if r.error.is_none() => reached += 1,
                Ok(Ok(Done::Eval(r, _))) => missed.push(
                    r.error
                        .map(|e| format!("{}: {}", e.type_name, e.message))
                        .unwrap_or_default(),
                ),
                Ok(Ok(other)) => missed.push(format!("{other:?}")),
                Ok(Err(e)) => missed.push(e.to_string()),
                Err(_) => missed.push("no answer".into()),
            }
        }
        let why = if missed.is_empty() {
            String::new()
        } else {
            format!("; not applied: {}", missed.join("; "))
        };
        let _ = out.send((
            Stream::Stderr,
            format!(
                "(hot-patch of {module} applied in {reached} of {} python workers on node {node}{why})\n",
                self.slots.len()
            ),
        ));
    }

    /// Interrupts the eval running in `session`; says whether one was running. A second
    /// interrupt after the client was told the eval has not stopped ([`STUCK_AFTER`] after the
    /// first) restarts the worker.
    pub async fn interrupt(self: &Arc<Self>, session: u64) -> Result<bool, WorkerError> {
        let Some(place) = self.sessions.place(session) else {
            return Ok(false);
        };
        let pool = self.pool_of(&place);
        let Some(link) = pool.current(&place) else {
            return Ok(false);
        };
        let told = {
            let mut inner = self.sessions.inner();
            match inner.running.get_mut(&session) {
                Some((at, told)) => {
                    at.get_or_insert_with(Instant::now);
                    *told
                }
                None => false,
            }
        };
        // Only once the client was told the eval has not stopped does a Ctrl-C restart it.
        if told {
            tracing::warn!(
                session,
                worker = %slot_label(place.slot),
                pid = link.pid,
                "an eval did not stop after Ctrl-C: restarting its python worker"
            );
            pool.kill(place.slot);
            return Ok(true);
        }
        match link.job(Job::Interrupt { session: place.sid }).await? {
            Done::Bool(ran) => Ok(ran),
            other => Err(unexpected(other)),
        }
    }

    /// The worker to ask about `session` (or about `module`, or any worker).
    async fn ask(
        self: &Arc<Self>,
        session: Option<u64>,
        module: Option<&str>,
    ) -> Result<(Option<u64>, Arc<Link>), WorkerError> {
        if let Some(pool) = module.and_then(|m| self.child_with_module(m)) {
            let (_, link) = pool.any(WAIT_FOR_WORKER).await?;
            return Ok((None, link));
        }
        if let Some(place) = session.and_then(|s| self.sessions.place(s)) {
            if let Some(link) = self.pool_of(&place).current(&place) {
                return Ok((Some(place.sid), link));
            }
        }
        let (_, link) = self.any(WAIT_FOR_WORKER).await?;
        Ok((None, link))
    }

    pub async fn is_complete(self: &Arc<Self>, code: String) -> Result<bool, WorkerError> {
        let (_, link) = self.ask(None, None).await?;
        match link.job(Job::IsComplete { code }).await? {
            Done::Bool(complete) => Ok(complete),
            other => Err(unexpected(other)),
        }
    }

    pub async fn complete(
        self: &Arc<Self>,
        session: Option<u64>,
        code: String,
        cursor: usize,
        module: Option<String>,
    ) -> Result<(usize, Vec<String>), WorkerError> {
        let (session, link) = self.ask(session, module.as_deref()).await?;
        match link
            .job(Job::Complete {
                session,
                code,
                cursor,
                module,
            })
            .await?
        {
            Done::Completions(start, items) => Ok((start, items)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn inspect(
        self: &Arc<Self>,
        session: Option<u64>,
        expr: String,
    ) -> Result<Inspection, WorkerError> {
        let (session, link) = self.ask(session, None).await?;
        match link.job(Job::Inspect { session, expr }).await? {
            Done::Inspection(inspection) => Ok(inspection),
            other => Err(unexpected(other)),
        }
    }
}
