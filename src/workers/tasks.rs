//! The pool's daemons, schedules and lambdas: the task specs of an app's HEAD, reconciling
//! the units the node should run on the tasks worker ([`super::TASKS_SLOT`]), firing a
//! schedule, the units' reports and log lines, stopping them at shutdown, and running a lambda
//! on the least busy worker (in its app's pool when the app has dependencies).

use std::sync::atomic::Ordering;

use push_protocol::{RunFunc, UnitReport, Value};

use super::{unexpected, Pool, WorkerError, TASKS_SLOT, WAIT_FOR_WORKER};
use crate::model::spec::HeadTasks;
use crate::runtime::tasks as py_tasks;
use crate::runtime::wire::{Done, Job};

impl Pool {
    /// The task specs of `app`'s HEAD as loaded on this node.
    pub async fn head_tasks(&self, app: String) -> Result<Option<HeadTasks>, WorkerError> {
        if let Some(pool) = self.child(&app) {
            return Box::pin(pool.head_tasks(app)).await;
        }
        let (_, link) = self.any(WAIT_FOR_WORKER).await?;
        match link.job(Job::HeadTasks { app }).await? {
            Done::Json(None) => Ok(None),
            Done::Json(Some(json)) => py_tasks::parse_head_tasks(&json)
                .map(Some)
                .map_err(|e| WorkerError::Failed(e.to_string())),
            other => Err(unexpected(other)),
        }
    }

    /// Runs exactly `wanted` (unit, generation) of `app` on this node's tasks worker.
    pub async fn reconcile(
        &self,
        app: String,
        wanted: Vec<(String, u64)>,
    ) -> Result<(), WorkerError> {
        if let Some(pool) = self.child(&app) {
            return Box::pin(pool.reconcile(app, wanted)).await;
        }
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.clone(), wanted.clone());
        let link = self.slot(TASKS_SLOT, WAIT_FOR_WORKER).await?;
        match link.job(Job::Reconcile { app, wanted }).await? {
            Done::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Starts one firing of schedule `name` on the tasks worker.
    pub async fn fire(&self, app: String, name: String) -> Result<bool, WorkerError> {
        if let Some(pool) = self.child(&app) {
            return Box::pin(pool.fire(app, name)).await;
        }
        let link = self.slot(TASKS_SLOT, WAIT_FOR_WORKER).await?;
        match link.job(Job::Fire { app, name }).await? {
            Done::Bool(started) => Ok(started),
            other => Err(unexpected(other)),
        }
    }

    /// What every unit and schedule on this node is doing (none while the tasks worker is
    /// restarting).
    pub async fn reports(&self) -> Result<Vec<UnitReport>, WorkerError> {
        let mut reports = Box::pin(self.child_reports()).await;
        let Some(link) = self.slots[TASKS_SLOT].link() else {
            return Ok(reports);
        };
        match link.job(Job::Reports).await? {
            Done::Json(Some(json)) => {
                let mut mine = py_tasks::parse_reports(&json)
                    .map_err(|e| WorkerError::Failed(e.to_string()))?;
                mine.append(&mut reports);
                Ok(mine)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Log lines of `unit` numbered above `after`.
    pub async fn lines(
        &self,
        app: String,
        unit: String,
        after: u64,
    ) -> Result<Vec<(u64, String)>, WorkerError> {
        if let Some(pool) = self.child(&app) {
            return Box::pin(pool.lines(app, unit, after)).await;
        }
        let link = self.slot(TASKS_SLOT, WAIT_FOR_WORKER).await?;
        match link.job(Job::Lines { app, unit, after }).await? {
            Done::Lines(lines) => Ok(lines),
            other => Err(unexpected(other)),
        }
    }

    /// Stops every unit (node shutdown), then lets the workers go.
    pub async fn stop_tasks(&self) {
        Box::pin(self.stop_children()).await;
        if let Some(link) = self.slots[TASKS_SLOT].link() {
            let _ = link.job(Job::StopTasks).await;
        }
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Runs a lambda on the least busy worker: its value, or the error with traceback.
    pub async fn run_lambda(&self, func: RunFunc, args: Vec<Value>) -> Result<Value, String> {
        // A lambda of an app with dependencies runs in that app's pool.
        let module = match &func {
            RunFunc::Path(path) => Some(lambda_module(path)),
            RunFunc::Code { module, .. } => module.as_deref(),
        };
        if let Some(pool) = module.and_then(|m| self.child_with_module(m)) {
            return Box::pin(pool.run_lambda(func, args)).await;
        }
        let (_, link) = self.any(WAIT_FOR_WORKER).await.map_err(|e| e.to_string())?;
        match link.job(Job::RunLambda { func, args }).await {
            Ok(Done::Lambda(result)) => result,
            Ok(other) => Err(unexpected(other).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The module of a lambda's `module:function` (or `module.function`) path.
fn lambda_module(path: &str) -> &str {
    match path.split_once(':') {
        Some((module, _)) => module,
        None => path.rsplit_once('.').map_or(path, |(module, _)| module),
    }
}
