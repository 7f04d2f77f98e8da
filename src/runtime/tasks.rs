//! The Rust half of tasks on this node: asks `tasks.py` to reconcile units, fire schedules,
//! report, return log lines and run lambdas. Decisions about *what* runs where are made in
//! `crate::tasks`; this module only carries them into Python.

use push_protocol::{RunFunc, UnitReport, Value};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::convert::{from_py, to_py};
use super::{Runtime, RuntimeError};
pub use crate::model::spec::{HeadTasks, TaskSpec, Where};

/// Why a lambda produced no value.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The function raised: the error with its traceback.
    #[error("{0}")]
    Raised(String),
    #[error("cannot start a thread for the lambda: {0}")]
    Thread(std::io::Error),
    #[error("the lambda's thread ended without an answer")]
    Lost,
}

fn tasks_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("_push_tasks")
}

fn py_err(e: PyErr) -> RuntimeError {
    RuntimeError::Python(e.to_string())
}

/// Task specs as `head_tasks_json` gives them.
pub fn parse_head_tasks(json: &str) -> Result<HeadTasks, RuntimeError> {
    serde_json::from_str(json).map_err(|e| RuntimeError::Python(format!("task specs: {e}")))
}

/// Unit reports as `reports_json` gives them.
pub fn parse_reports(json: &str) -> Result<Vec<UnitReport>, RuntimeError> {
    serde_json::from_str(json).map_err(|e| RuntimeError::Python(format!("task reports: {e}")))
}

impl Runtime {
    /// The task specs of `app`'s HEAD loaded here as JSON (None before a version loaded);
    /// the node parses them with [`parse_head_tasks`].
    pub async fn head_tasks_json(&self, app: String) -> Result<Option<String>, RuntimeError> {
        let boot = self.bootstrap.clone();
        self.run(move |py| -> PyResult<Option<String>> {
            boot.bind(py)
                .getattr("head_tasks")?
                .call1((app,))?
                .extract()
        })
        .await?
        .map_err(py_err)
    }

    /// Runs exactly `wanted` (unit, generation) of `app` on this node.
    pub async fn reconcile(
        &self,
        app: String,
        wanted: Vec<(String, u64)>,
    ) -> Result<(), RuntimeError> {
        self.run(move |py| -> PyResult<()> {
            tasks_module(py)?
                .getattr("reconcile")?
                .call1((app, wanted))?;
            Ok(())
        })
        .await?
        .map_err(py_err)
    }

    /// Starts one firing of schedule `name`.
    pub async fn fire(&self, app: String, name: String) -> Result<bool, RuntimeError> {
        self.run(move |py| -> PyResult<bool> {
            tasks_module(py)?
                .getattr("fire")?
                .call1((app, name))?
                .extract()
        })
        .await?
        .map_err(py_err)
    }

    /// What every unit and schedule here is doing, as JSON ([`parse_reports`]).
    pub async fn reports_json(&self) -> Result<String, RuntimeError> {
        self.run(|py| -> PyResult<String> {
            tasks_module(py)?.getattr("reports")?.call0()?.extract()
        })
        .await?
        .map_err(py_err)
    }

    /// Log lines of `unit` numbered above `after`.
    pub async fn lines(
        &self,
        app: String,
        unit: String,
        after: u64,
    ) -> Result<Vec<(u64, String)>, RuntimeError> {
        self.run(move |py| -> PyResult<Vec<(u64, String)>> {
            tasks_module(py)?
                .getattr("lines")?
                .call1((app, unit, after))?
                .extract()
        })
        .await?
        .map_err(py_err)
    }

    /// Stops every unit (node shutdown), waiting up to their stop deadline.
    pub async fn stop_tasks(&self) {
        let _ = self
            .run(|py| -> PyResult<()> {
                tasks_module(py)?.getattr("stop_all")?.call0()?;
                Ok(())
            })
            .await;
    }

    /// Runs a lambda on a thread of its own; its value, or the error text with traceback.
    pub async fn run_lambda(&self, func: RunFunc, args: Vec<Value>) -> Result<Value, LambdaError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("python-lambda".into())
            .stack_size(super::PY_STACK)
            .spawn(move || {
                let result = Python::attach(|py| -> Result<Value, LambdaError> {
                    let call = || -> PyResult<Value> {
                        let args = args
                            .iter()
                            .map(|a| to_py(py, a))
                            .collect::<PyResult<Vec<_>>>()?;
                        let (path, code, name, module) = match &func {
                            RunFunc::Path(p) => (Some(p.clone()), None, String::new(), None),
                            RunFunc::Code { code, name, module } => (
                                None,
                                Some(PyBytes::new(py, code).unbind()),
                                name.clone(),
                                module.clone(),
                            ),
                        };
                        let out = tasks_module(py)?
                            .getattr("run_lambda")?
                            .call1((path, code, name, module, args))?;
                        from_py(&out)
                    };
                    call().map_err(|e| {
                        let tb = py
                            .import("_push_runtime")
                            .and_then(|m| m.getattr("format_exception")?.call1((e.value(py),)))
                            .and_then(|s| s.extract::<String>());
                        LambdaError::Raised(tb.unwrap_or_else(|_| e.to_string()))
                    })
                });
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            return Err(LambdaError::Thread(e));
        }
        rx.await.unwrap_or(Err(LambdaError::Lost))
    }
}
