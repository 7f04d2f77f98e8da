//! `_push_native`: the Rust functions behind the `push` Python module.
//!
//! Each call releases the GIL, runs the request through the node's ordinary dispatch (so a
//! follower forwards writes to the leader exactly as for a network client) on the tokio
//! runtime, and converts the reply. Errors become `push.PushError` with the node's message.

use std::sync::{Arc, OnceLock};

use push_protocol::{ErrorBody, Op, Outcome, ReadMode, Reply};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::convert::{from_py, to_py};
use crate::node::Node;
use crate::server::dispatch;

create_exception!(
    _push_native,
    PushError,
    PyException,
    "A cluster operation failed; the message says why and what to do next."
);

/// What native calls need: the node and a handle to its async runtime.
pub struct Context {
    pub node: Arc<Node>,
    pub handle: tokio::runtime::Handle,
}

static CONTEXT: OnceLock<Context> = OnceLock::new();

/// Connects the Python API to a running node. Called once when the node starts.
pub fn install(node: Arc<Node>, handle: tokio::runtime::Handle) {
    let _ = CONTEXT.set(Context { node, handle });
}

fn context() -> PyResult<&'static Context> {
    CONTEXT
        .get()
        .ok_or_else(|| PushError::new_err("this interpreter is not attached to a Push node"))
}

fn call(py: Python<'_>, op: Op) -> PyResult<Reply> {
    let ctx = context()?;
    let outcome: Outcome =
        py.allow_threads(|| ctx.handle.block_on(dispatch::handle(&ctx.node, op)));
    outcome.map_err(|e: ErrorBody| PushError::new_err(e.message))
}

fn unexpected(reply: Reply) -> PyErr {
    PushError::new_err(format!("unexpected reply from the node: {reply:?}"))
}

#[pyfunction]
fn kv_get(py: Python<'_>, map: String, key: String, stale: bool) -> PyResult<(bool, PyObject)> {
    let read = if stale {
        ReadMode::Stale
    } else {
        ReadMode::Linearizable
    };
    match call(py, Op::KvGet { map, key, read })? {
        Reply::Value(Some(v)) => Ok((true, to_py(py, &v)?)),
        Reply::Value(None) => Ok((false, py.None())),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn kv_set(py: Python<'_>, map: String, key: String, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let value = from_py(value)?;
    match call(py, Op::KvSet { map, key, value })? {
        Reply::Written { .. } => Ok(()),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn kv_delete(py: Python<'_>, map: String, key: String) -> PyResult<bool> {
    match call(py, Op::KvDelete { map, key })? {
        Reply::Deleted { existed, .. } => Ok(existed),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn kv_cas(
    py: Python<'_>,
    map: String,
    key: String,
    expected: &Bound<'_, PyAny>,
    new: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let optional = |o: &Bound<'_, PyAny>| -> PyResult<Option<push_protocol::Value>> {
        if o.is_none() {
            Ok(None)
        } else {
            from_py(o).map(Some)
        }
    };
    let (expected, new) = (optional(expected)?, optional(new)?);
    match call(
        py,
        Op::KvCas {
            map,
            key,
            expected,
            new,
        },
    )? {
        Reply::Cas { ok, .. } => Ok(ok),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn kv_keys(py: Python<'_>, map: String, prefix: String) -> PyResult<Vec<String>> {
    match call(
        py,
        Op::KvList {
            map,
            prefix,
            read: ReadMode::Linearizable,
        },
    )? {
        Reply::Keys(keys) => Ok(keys),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn node_info(py: Python<'_>) -> PyResult<PyObject> {
    let ctx = context()?;
    let status = ctx.node.status();
    let dict = PyDict::new(py);
    dict.set_item("id", status.id)?;
    dict.set_item("addr", status.addr)?;
    dict.set_item("role", status.role)?;
    dict.set_item("leader", status.leader)?;
    dict.set_item("term", status.term)?;
    Ok(dict.into_any().unbind())
}

#[pyfunction]
fn members(py: Python<'_>) -> PyResult<Vec<PyObject>> {
    let ctx = context()?;
    ctx.node
        .members()
        .into_iter()
        .map(|m| {
            let dict = PyDict::new(py);
            dict.set_item("id", m.id)?;
            dict.set_item("addr", m.addr)?;
            dict.set_item("voter", m.voter)?;
            Ok(dict.into_any().unbind())
        })
        .collect()
}

#[pyfunction]
fn queue_put(py: Python<'_>, queue: String, values: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let values = values
        .try_iter()?
        .map(|v| from_py(&v?))
        .collect::<PyResult<Vec<_>>>()?;
    match call(py, Op::QueuePut { queue, values })? {
        Reply::Put { ids } => Ok(ids),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn queue_take(
    py: Python<'_>,
    queue: String,
    lease_ms: u64,
    wait_ms: u64,
) -> PyResult<Option<(u64, PyObject, u32)>> {
    match call(
        py,
        Op::QueueTake {
            queue,
            lease_ms,
            wait_ms,
        },
    )? {
        Reply::Taken(Some(item)) => Ok(Some((item.id, to_py(py, &item.value)?, item.deliveries))),
        Reply::Taken(None) => Ok(None),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn queue_ack(py: Python<'_>, queue: String, id: u64) -> PyResult<bool> {
    match call(py, Op::QueueAck { queue, id })? {
        Reply::Acked { ok } => Ok(ok),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn queue_peek(py: Python<'_>, queue: String, n: usize) -> PyResult<Vec<PyObject>> {
    match call(py, Op::QueuePeek { queue, n })? {
        Reply::Peeked(items) => items.iter().map(|i| to_py(py, &i.value)).collect(),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn queue_stats(py: Python<'_>, queue: String) -> PyResult<(usize, usize)> {
    match call(py, Op::QueueStats)? {
        Reply::QueueStats(stats) => Ok(stats
            .into_iter()
            .find(|s| s.name == queue)
            .map_or((0, 0), |s| (s.ready, s.leased))),
        other => Err(unexpected(other)),
    }
}

/// The files and entry module of a version, read from this node's state (None if absent).
#[pyfunction]
fn version_source(
    app: String,
    number: u64,
) -> PyResult<Option<(std::collections::BTreeMap<String, String>, String)>> {
    let ctx = context()?;
    let Ok((_, files)) = ctx.node.read(|s| s.code.files(&app, Some(number))) else {
        return Ok(None);
    };
    let files = super::sources(files).map_err(PushError::new_err)?;
    let entry = super::entry_module(&files).map_err(PushError::new_err)?;
    Ok(Some((files, entry)))
}

/// Builds the `_push_native` module.
pub fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "_push_native")?;
    m.add_function(wrap_pyfunction!(kv_get, &m)?)?;
    m.add_function(wrap_pyfunction!(kv_set, &m)?)?;
    m.add_function(wrap_pyfunction!(kv_delete, &m)?)?;
    m.add_function(wrap_pyfunction!(kv_cas, &m)?)?;
    m.add_function(wrap_pyfunction!(kv_keys, &m)?)?;
    m.add_function(wrap_pyfunction!(node_info, &m)?)?;
    m.add_function(wrap_pyfunction!(members, &m)?)?;
    m.add_function(wrap_pyfunction!(version_source, &m)?)?;
    m.add_function(wrap_pyfunction!(queue_put, &m)?)?;
    m.add_function(wrap_pyfunction!(queue_take, &m)?)?;
    m.add_function(wrap_pyfunction!(queue_ack, &m)?)?;
    m.add_function(wrap_pyfunction!(queue_peek, &m)?)?;
    m.add_function(wrap_pyfunction!(queue_stats, &m)?)?;
    m.add("PushError", py.get_type::<PushError>())?;
    Ok(m)
}
