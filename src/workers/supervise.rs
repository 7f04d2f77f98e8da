//! Keeping one worker slot filled: start a worker, bring it up to date (the versions the node
//! serves, its daemons), watch it (exit, signal, memory), and when it ends fail what was in
//! flight on it with the reason, log it, and start the next one after a backoff.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::Child;

use super::process;
use super::{Link, Pool, Slot, WorkerError};
use crate::runtime::wire::Job;

/// How long a starting worker may take to say hello.
pub const HELLO_WITHIN: Duration = Duration::from_secs(60);

/// First and longest wait before restarting a worker that ended.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A worker that ran this long resets the backoff.
const STEADY: Duration = Duration::from_secs(10);
/// How often a worker's memory is checked against `--py-worker-max-rss`.
const RSS_EVERY: Duration = Duration::from_millis(500);

/// Starts a worker and waits for its hello.
pub async fn start(
    pool: &Pool,
    label: &str,
    scratch: bool,
) -> Result<(Child, Arc<Link>), WorkerError> {
    start_in(pool, label, scratch, pool.config.env.as_deref()).await
}

/// Starts a worker whose `sys.path` starts with `env`, and waits for its hello.
pub async fn start_in(
    pool: &Pool,
    label: &str,
    scratch: bool,
    env: Option<&std::path::Path>,
) -> Result<(Child, Arc<Link>), WorkerError> {
    let cluster = pool.cluster()?;
    let owner = if scratch {
        None
    } else {
        pool.config.owner.as_deref()
    };
    let (mut child, socket) = process::spawn(&pool.config, label, env, owner)?;
    match Link::connect(socket, cluster, scratch, HELLO_WITHIN).await {
        Ok(link) => Ok((child, link)),
        Err(e) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(e)
        }
    }
}

/// Keeps slot `index` filled until the pool shuts down.
pub async fn keep(pool: Arc<Pool>, index: usize) {
    let slot: Arc<Slot> = pool.slots[index].clone();
    let mut backoff = BACKOFF_FIRST;
    loop {
        if pool.stopping.load(Ordering::Relaxed) {
            return;
        }
        let label = super::slot_label(index);
        let started = Instant::now();
        let (mut child, link) = match start(&pool, &label, false).await {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(worker = %label, "cannot start a python worker: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let pid = link.pid;
        if pool.stopping.load(Ordering::Relaxed) {
            // The pool was stopped while this worker started (a drained app pool).
            let _ = child.start_kill();
            let _ = child.wait().await;
            return;
        }
        if let Err(why) = pool.bring_up(&slot, link.clone()).await {
            // A worker without the node's versions would answer its requests with 503s.
            let _ = child.start_kill();
            let _ = child.wait().await;
            let ending = format!("could not be brought up to date: {why}");
            tracing::error!(worker = %label, pid, "python worker {ending}; starting a new one in {backoff:?}");
            slot.restarts.fetch_add(1, Ordering::Relaxed);
            *slot.last_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(ending);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        tracing::info!(worker = %label, pid, "python worker ready");
        let ending = watch(&pool, &mut child, &link).await;
        slot.set_down();
        // A worker that ended by a signal could not remove its copies of the files.
        process::remove_temp(pid);
        let why = format!("python worker {label} (pid {pid}) {ending}");
        link.close(format!("{why} while handling this request"));
        if pool.stopping.load(Ordering::Relaxed) {
            return;
        }
        slot.restarts.fetch_add(1, Ordering::Relaxed);
        crate::metrics::worker_restarted();
        if started.elapsed() >= STEADY {
            backoff = BACKOFF_FIRST;
        }
        tracing::error!(worker = %label, pid, "{why}; starting a new one in {backoff:?}");
        *slot.last_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(ending);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Waits for the worker to end; kills it when its socket ends first, or when it grows over the
/// memory limit. Says how it ended.
async fn watch(pool: &Pool, child: &mut Child, link: &Link) -> String {
    let limit = pool.config.max_rss;
    let mut over: Option<u64> = None;
    let mut tick = tokio::time::interval(RSS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = link.ended() => {
                // The socket ended: the process is on its way out (or wedged); give it a moment.
                match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                    Ok(status) => break status,
                    Err(_) => {
                        let _ = child.start_kill();
                        break child.wait().await;
                    }
                }
            }
            _ = tick.tick(), if limit.is_some() => {
                let rss = crate::procstat::of_pid(link.pid).rss_bytes;
                if let Some(limit) = limit.filter(|l| rss > *l) {
                    over = Some(rss);
                    tracing::warn!(pid = link.pid, "python worker uses {} MiB, over --py-worker-max-rss {} MiB: restarting it", rss >> 20, limit >> 20);
                    let _ = child.start_kill();
                }
            }
        }
    };
    match (status, over) {
        (_, Some(rss)) => format!(
            "was over its memory limit ({} MiB > --py-worker-max-rss {} MiB) and was restarted",
            rss >> 20,
            limit.unwrap_or(0) >> 20
        ),
        (Ok(status), None) => process::describe(&status),
        (Err(e), None) => format!("could not be waited for ({e})"),
    }
}

/// Replays what a fresh worker must hold: the versions the node serves, the hot-patches made
/// since, then (on the tasks slot) the daemons placed here. A version that does not load is
/// an error: the worker must not take requests without it.
pub async fn replay(pool: &Pool, link: &Link, index: usize) -> Result<(), String> {
    let loaded = pool.loaded_versions();
    for (app, version) in loaded {
        let job = Job::Load {
            app: app.clone(),
            number: version.number,
            files: version.files,
            entry: version.entry,
        };
        let failed = match link.job(job).await {
            Ok(crate::runtime::wire::Done::Refusal(None)) => {
                link.hold(&app);
                continue;
            }
            Ok(crate::runtime::wire::Done::Refusal(Some(why))) => why,
            Ok(other) => format!("{other:?}"),
            Err(e) => e.to_string(),
        };
        return Err(format!(
            "it cannot load {app}@v{}, which its node serves: {failed}",
            version.number
        ));
    }
    for (module, code) in pool.patches() {
        let (_output, done) = link.eval(Job::Eval {
            session: None,
            code,
            module: Some(module.clone()),
            node: 0,
        });
        if !matches!(done.await, Ok(Ok(crate::runtime::wire::Done::Eval(ref r, _))) if r.error.is_none())
        {
            tracing::warn!(%module, "a hot-patch made before this python worker started did not apply to it");
        }
    }
    if index == super::TASKS_SLOT {
        for (app, wanted) in pool.wanted_units() {
            if let Err(e) = link
                .job(Job::Reconcile {
                    app: app.clone(),
                    wanted,
                })
                .await
            {
                tracing::warn!(%app, "cannot restart daemons on a new python worker: {e}");
            }
        }
    }
    Ok(())
}
