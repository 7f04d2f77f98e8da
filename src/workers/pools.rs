//! One worker pool per (app, environment): an app whose version has dependencies runs in a
//! pool of its own whose workers put that environment first on `sys.path`; apps without
//! dependencies share the node's main pool. The main pool routes an app's requests, tasks
//! and loads to the app's pool; a new environment gets a new pool, which takes over once it
//! has loaded the version, and the old one is drained (requests in flight finish) and stopped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use push_protocol::PlatformInfo;

use super::envs::{self, EnvError};
use super::{Pool, PoolConfig, WorkerError, WAIT_FOR_WORKER};

/// How long a replaced pool's requests in flight may take before its workers are stopped.
const DRAIN_WITHIN: Duration = Duration::from_secs(30);

/// The pool a version runs in: that of its environment (hash and installed directory), or,
/// for a WSGI/ASGI app without dependencies, a pool of its own ([`Env::web`]).
#[derive(Clone, Debug)]
pub struct Env {
    pub hash: String,
    pub dir: Option<PathBuf>,
}

/// The "environment hash" of the own pool of a WSGI/ASGI app without dependencies.
pub const WEB_POOL: &str = "web";

impl Env {
    /// The own pool of a WSGI/ASGI app without dependencies: the main pool's packages, and
    /// only this app's code, so its secrets and config can be in `os.environ`.
    pub fn web() -> Env {
        Env {
            hash: WEB_POOL.to_string(),
            dir: None,
        }
    }
}

impl Pool {
    /// The pool of `app`'s environment, when its version has dependencies.
    pub(super) fn child(&self, app: &str) -> Option<Arc<Pool>> {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .map(|(_, pool)| pool.clone())
    }

    /// The app pool whose app has module `module` (dotted), with that app's name: evals in
    /// that module, sessions that evaluate in it and lambdas defined there run in it.
    pub(super) fn child_with_module(&self, module: &str) -> Option<Arc<Pool>> {
        self.app_of_module(module).map(|(_, pool)| pool)
    }

    /// Each app with a pool of its own, and that pool (copied out of the lock).
    pub(super) fn app_pools(&self) -> Vec<(String, Arc<Pool>)> {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(app, (_, pool))| (app.clone(), pool.clone()))
            .collect()
    }

    pub(super) fn app_of_module(&self, module: &str) -> Option<(String, Arc<Pool>)> {
        let children = self.app_pools();
        children.into_iter().find(|(app, pool)| {
            pool.loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(app)
                .is_some_and(|v| has_module(&v.files, module))
        })
    }

    /// The pool `pool` names (None: this main pool; else an app's name or its rows'
    /// "APP/ENV") and its app.
    pub(super) fn named_pool(
        self: &Arc<Self>,
        pool: Option<&str>,
    ) -> Result<(Arc<Pool>, Option<String>), WorkerError> {
        let Some(name) = pool else {
            return Ok((self.clone(), None));
        };
        let app = name.split('/').next().unwrap_or(name);
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        match children.get(app) {
            Some((hash, child)) if name == app || name == pool_label(app, hash) => {
                Ok((child.clone(), Some(app.to_string())))
            }
            _ => {
                let mut known = vec!["the main pool (no pool named)".to_string()];
                known.extend(
                    children
                        .iter()
                        .map(|(app, (hash, _))| pool_label(app, hash)),
                );
                Err(WorkerError::NoSuchPool(name.to_string(), known.join(", ")))
            }
        }
    }

    fn children(&self) -> Vec<Arc<Pool>> {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(_, pool)| pool.clone())
            .collect()
    }

    /// The environment hashes the app pools run now.
    pub fn envs_in_use(&self) -> BTreeSet<String> {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(hash, _)| hash.clone())
            .collect()
    }

    /// Where environments are installed on this node.
    pub fn envs_dir(&self) -> PathBuf {
        self.config.envs_dir.clone()
    }

    /// How many of each app's latest versions keep their environment.
    pub fn keep_envs(&self) -> usize {
        self.config.keep_envs
    }

    /// The Python executable of the workers' interpreter (waits for a worker to know it).
    async fn python_executable(&self) -> Result<PathBuf, EnvError> {
        self.any(WAIT_FOR_WORKER)
            .await
            .map_err(|e| EnvError::Io(e.to_string()))?;
        let version = self.python_version();
        let prefix = self
            .prefix
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        envs::python_executable(&version, &prefix)
    }

    /// The interpreter's version and tags, for resolving wheels that install here.
    pub async fn platform(&self) -> Result<PlatformInfo, EnvError> {
        let python = self.python_executable().await?;
        envs::platform(&python).await
    }

    /// Installs environment `hash` from `wheels` unless it is installed (one install at a
    /// time per node, so the gate and a load of the same environment install it once).
    pub async fn ensure_env(
        &self,
        hash: &str,
        wheels: Vec<(String, std::path::PathBuf)>,
    ) -> Result<Env, EnvError> {
        let _one = self.install_lock.lock().await;
        let dir = envs::env_dir(&self.config.envs_dir, hash);
        if dir.is_dir() {
            return Ok(Env {
                hash: hash.to_string(),
                dir: Some(dir),
            });
        }
        let python = self.python_executable().await?;
        let (dir, fresh) = envs::install(&python, &self.config.envs_dir, hash, wheels).await?;
        if fresh {
            tracing::info!(env = %hash, "installed an app environment");
        }
        Ok(Env {
            hash: hash.to_string(),
            dir: Some(dir),
        })
    }

    /// Loads `app`'s version `number` to run in `env` (None: the main pool)
    /// and makes it the one this node serves. A new environment starts a new pool; the
    /// app's previous pool is drained once the new one serves.
    pub async fn load_in(
        self: &Arc<Self>,
        app: &str,
        number: u64,
        files: std::collections::BTreeMap<String, String>,
        entry: String,
        env: Option<Env>,
    ) -> Result<(), WorkerError> {
        let current = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .cloned();
        let Some(env) = env else {
            self.load(app, number, files, entry).await?;
            let old = self
                .children
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(app);
            if let Some((_, old)) = old {
                let wanted = old.wanted_of(app);
                tokio::spawn(drain(old));
                if let Some(wanted) = wanted {
                    self.reconcile(app.to_string(), wanted).await?;
                }
            }
            return Ok(());
        };
        if let Some((hash, pool)) = &current {
            if *hash == env.hash {
                return pool.load(app, number, files, entry).await;
            }
        }
        let fresh = Pool::new(PoolConfig {
            env: env.dir.clone(),
            owner: Some(app.to_string()),
            ..self.config.clone()
        });
        fresh.start(self.cluster()?);
        if let Err(e) = fresh.load(app, number, files, entry).await {
            tokio::spawn(drain(fresh));
            return Err(e);
        }
        let wanted = match &current {
            Some((_, old)) => old.wanted_of(app),
            None => {
                // The app leaves the main pool: its daemons stop there, its code is not
                // replayed to new main workers any more.
                let wanted = self.wanted_of(app);
                if wanted.is_some() {
                    let _ = self.reconcile(app.to_string(), Vec::new()).await;
                }
                self.forget(app);
                wanted
            }
        };
        let old = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_string(), (env.hash.clone(), fresh.clone()));
        if let Some((_, old)) = old {
            tokio::spawn(drain(old));
        }
        tracing::info!(%app, version = number, env = %env.hash, "serving from the pool of its environment");
        if let Some(wanted) = wanted {
            fresh.reconcile(app.to_string(), wanted).await?;
        }
        Ok(())
    }

    fn wanted_of(&self, app: &str) -> Option<Vec<(String, u64)>> {
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .cloned()
    }

    /// Drops what the main pool remembers of `app` (it is served by its own pool now).
    fn forget(&self, app: &str) {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }

    /// Load state of the apps served by their own pools.
    pub(super) fn child_apps(&self) -> Vec<(String, crate::runtime::AppState)> {
        let children = self.app_pools();
        children
            .into_iter()
            .filter_map(|(app, pool)| pool.apps().remove(&app).map(|s| (app, s)))
            .collect()
    }

    /// Unit reports and worker rows of the app pools.
    pub(super) async fn child_reports(&self) -> Vec<push_protocol::UnitReport> {
        let mut reports = Vec::new();
        for pool in self.children() {
            match pool.reports().await {
                Ok(mut more) => reports.append(&mut more),
                Err(e) => tracing::warn!("cannot read the units of an app pool: {e}"),
            }
        }
        reports
    }

    /// The rows of the app pools' workers, each naming its pool.
    pub(super) fn child_rows(&self) -> Vec<push_protocol::WorkerRow> {
        let children: Vec<(String, String, Arc<Pool>)> = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(app, (hash, pool))| (app.clone(), hash.clone(), pool.clone()))
            .collect();
        let mut rows = Vec::new();
        for (app, hash, pool) in children {
            for mut row in pool.rows_of(&self.sessions) {
                row.pool = Some(pool_label(&app, &hash));
                rows.push(row);
            }
        }
        rows
    }

    /// Stops the units of the app pools (node shutdown).
    pub(super) async fn stop_children(&self) {
        for pool in self.children() {
            pool.stop_tasks().await;
        }
    }

    /// Stops this pool's workers for good.
    fn shut(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        for index in 0..self.slots.len() {
            self.kill(index);
        }
    }
}

/// An app pool's name in rows and messages: "APP/ENV", ENV the first 12 characters of its
/// environment's hash.
pub fn pool_label(app: &str, hash: &str) -> String {
    format!("{app}/{}", hash.get(..12).unwrap_or(hash))
}

/// Whether a version's `files` hold module `module` (a `.py` file or a folder of them).
fn has_module(files: &std::collections::BTreeMap<String, String>, module: &str) -> bool {
    files.keys().any(|path| {
        let Some(stem) = path.strip_suffix(".py") else {
            return false;
        };
        let stem = stem.strip_suffix("/__init__").unwrap_or(stem);
        let name = stem.replace('/', ".");
        name == module
            || name
                .strip_prefix(module)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Lets `old`'s requests in flight finish (bounded), stops its units, then its workers.
async fn drain(old: Arc<Pool>) {
    let deadline = tokio::time::Instant::now() + DRAIN_WITHIN;
    loop {
        let busy: usize = old
            .live()
            .iter()
            .map(|(_, l)| l.inflight.load(Ordering::Relaxed))
            .sum();
        if busy == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        // Polls a counter the links keep; nothing signals "idle".
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.stop_tasks().await;
    old.shut();
}
