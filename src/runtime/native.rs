//! `_push_native`: the Rust functions behind the `push` Python module.
//!
//! Each call releases the GIL, sends the request to the [`Cluster`] the node installed (so a
//! follower forwards writes to the leader exactly as for a network client) on the tokio
//! runtime, and converts the reply. Errors become `push.PushError` with the node's message.

use std::sync::{Arc, OnceLock};

use std::time::Duration;

use push_protocol::{
    realm, ErrorBody, Op, Outcome, ReadMode, Reply, RunFunc, RunOn, TsConfig, TsPoint,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::cluster::Cluster;
use super::convert::{from_py, to_py};

create_exception!(
    _push_native,
    PushError,
    PyException,
    "A cluster operation failed; the message says why and what to do next."
);

/// What native calls need: the cluster and a handle to its async runtime.
pub struct Context {
    pub cluster: Arc<dyn Cluster>,
    pub handle: tokio::runtime::Handle,
}

static CONTEXT: OnceLock<Context> = OnceLock::new();

/// Connects the Python API to a running node. Called once when the node starts.
pub fn install(cluster: Arc<dyn Cluster>, handle: tokio::runtime::Handle) {
    let _ = CONTEXT.set(Context { cluster, handle });
}

fn context() -> PyResult<&'static Context> {
    CONTEXT
        .get()
        .ok_or_else(|| PushError::new_err("this interpreter is not attached to a Push node"))
}

fn call(py: Python<'_>, op: Op) -> PyResult<Reply> {
    let ctx = context()?;
    let outcome: Outcome = py.detach(|| ctx.handle.block_on(ctx.cluster.call(op)));
    outcome.map_err(|e: ErrorBody| PushError::new_err(e.message))
}

fn unexpected(reply: Reply) -> PyErr {
    PushError::new_err(format!("unexpected reply from the node: {reply:?}"))
}

#[pyfunction]
fn kv_get(py: Python<'_>, map: String, key: String, stale: bool) -> PyResult<(bool, Py<PyAny>)> {
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
fn node_info(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let ctx = context()?;
    let status = py
        .detach(|| ctx.cluster.status())
        .map_err(|e| PushError::new_err(e.message))?;
    let dict = PyDict::new(py);
    dict.set_item("id", status.id)?;
    dict.set_item("addr", status.addr)?;
    dict.set_item("role", status.role)?;
    dict.set_item("leader", status.leader)?;
    dict.set_item("term", status.term)?;
    Ok(dict.into_any().unbind())
}

#[pyfunction]
fn members(py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
    let ctx = context()?;
    py.detach(|| ctx.cluster.members())
        .map_err(|e| PushError::new_err(e.message))?
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
) -> PyResult<Option<(u64, Py<PyAny>, u32)>> {
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
fn queue_peek(py: Python<'_>, queue: String, n: usize) -> PyResult<Vec<Py<PyAny>>> {
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
fn version_source(py: Python<'_>, app: String, number: u64) -> PyResult<Option<VersionSource>> {
    let ctx = context()?;
    let files = py
        .detach(|| ctx.cluster.version_files(&app, number))
        .map_err(|e| PushError::new_err(e.message))?;
    let Some(files) = files else {
        return Ok(None);
    };
    let files = super::sources(files).map_err(|e| PushError::new_err(e.to_string()))?;
    let entry = super::entry_module(&files).map_err(|e| PushError::new_err(e.to_string()))?;
    let web = super::web_app(&files)
        .map_err(|e| PushError::new_err(e.to_string()))?
        .map(|(kind, module, attr)| (kind.name().to_string(), module, attr));
    Ok(Some((files, entry, web)))
}

/// A version's files, entry module and web app (kind, module, attribute), for a pinned load.
type VersionSource = (
    std::collections::BTreeMap<String, String>,
    String,
    Option<(String, String, String)>,
);

type PointRow = (Option<i64>, Option<String>, push_protocol::Value);

#[pyfunction]
#[pyo3(signature = (series, rows, config=None))]
fn ts_append(
    py: Python<'_>,
    series: String,
    rows: Vec<(Option<i64>, Option<String>, Bound<'_, PyAny>)>,
    config: Option<(Option<u64>, Option<u64>, u32)>,
) -> PyResult<Vec<u64>> {
    let points = rows
        .iter()
        .map(|(t, k, v)| Ok((*t, k.clone(), from_py(v)?)))
        .collect::<PyResult<Vec<PointRow>>>()?;
    let config = config.map(|(max_age_ms, max_points, partitions)| TsConfig {
        max_age_ms,
        max_points,
        partitions: partitions.max(1),
    });
    match call(
        py,
        Op::TsAppend {
            series,
            points,
            config,
        },
    )? {
        Reply::Appended { seqs } => Ok(seqs),
        other => Err(unexpected(other)),
    }
}

fn point_tuple(py: Python<'_>, p: &TsPoint) -> PyResult<Py<PyAny>> {
    let t = p.t_ms as f64 / 1000.0;
    Ok((t, p.key.clone(), to_py(py, &p.value)?)
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

#[pyfunction]
#[pyo3(signature = (series, t0=None, t1=None, last=None))]
fn ts_range(
    py: Python<'_>,
    series: String,
    t0: Option<i64>,
    t1: Option<i64>,
    last: Option<usize>,
) -> PyResult<Vec<Py<PyAny>>> {
    let op = Op::TsRange {
        series,
        t0,
        t1,
        last,
        read: ReadMode::Linearizable,
    };
    match call(py, op)? {
        Reply::Points(points) => points.iter().map(|p| point_tuple(py, p)).collect(),
        other => Err(unexpected(other)),
    }
}

#[pyfunction]
fn ts_stats(py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
    match call(py, Op::TsStats)? {
        Reply::TsStats(stats) => stats
            .into_iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("name", s.name)?;
                d.set_item("points", s.points)?;
                d.set_item("appended", s.appended)?;
                Ok(d.into_any().unbind())
            })
            .collect(),
        other => Err(unexpected(other)),
    }
}

/// Where partition handler `unit` of `series` left off (this node's copy of the state).
#[pyfunction]
fn ts_cursor(py: Python<'_>, series: String, unit: String) -> PyResult<u64> {
    let ctx = context()?;
    py.detach(|| ctx.cluster.ts_cursor(&series, &unit))
        .map_err(|e| PushError::new_err(e.message))
}

/// (seq, t_ms, key, value) as a partition handler receives it.
type PartitionPoint = (u64, i64, Option<String>, Py<PyAny>);

/// Up to `limit` points of one partition after `after`, waiting up to `wait_ms` for some.
#[pyfunction]
fn ts_after(
    py: Python<'_>,
    series: String,
    partition: u32,
    after: u64,
    limit: usize,
    wait_ms: u64,
) -> PyResult<Vec<PartitionPoint>> {
    let ctx = context()?;
    let wait = Duration::from_millis(wait_ms);
    let points = py
        .detach(|| {
            ctx.handle
                .block_on(ctx.cluster.ts_after(series, partition, after, limit, wait))
        })
        .map_err(|e| PushError::new_err(e.message))?;
    points
        .iter()
        .map(|p| Ok((p.seq, p.t_ms, p.key.clone(), to_py(py, &p.value)?)))
        .collect()
}

/// Records that handler `unit` finished the points of `series` up to `upto`.
#[pyfunction]
fn ts_commit(py: Python<'_>, series: String, unit: String, upto: u64) -> PyResult<()> {
    match call(py, Op::TsCursor { series, unit, upto })? {
        Reply::Written { .. } => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Runs a lambda: returns {node: (ok, value or error text)}.
#[pyfunction]
fn run(
    py: Python<'_>,
    func: (String, Bound<'_, PyAny>, Option<String>, Option<String>),
    args: Vec<Bound<'_, PyAny>>,
    target: (String, Bound<'_, PyAny>),
    timeout: f64,
) -> PyResult<Py<PyAny>> {
    let (kind, body, name, module) = func;
    let func = if kind == "path" {
        RunFunc::Path(body.extract()?)
    } else {
        RunFunc::Code {
            code: push_protocol::ByteBuf::from(body.extract::<Vec<u8>>()?),
            name: name.unwrap_or_else(|| "<lambda>".into()),
            module,
        }
    };
    let args = args.iter().map(from_py).collect::<PyResult<Vec<_>>>()?;
    let on = match target.0.as_str() {
        "any" => RunOn::Any,
        "all" => RunOn::All,
        "node" => RunOn::Node(target.1.extract()?),
        "tag" => RunOn::Tag(target.1.extract()?),
        other => return Err(PushError::new_err(format!("unknown target {other:?}"))),
    };
    let ctx = context()?;
    let limit = Duration::from_secs_f64(timeout.clamp(0.001, 3_600.0));
    let outcome: Outcome = py.detach(|| {
        ctx.handle.block_on(async {
            tokio::time::timeout(limit, ctx.cluster.call(Op::Run { func, args, on }))
                .await
                .unwrap_or_else(|_| {
                    Err(ErrorBody::new(
                        push_protocol::ErrorCode::Unavailable,
                        format!("push.run got no answer within {timeout}s; raise timeout= or check the function"),
                    ))
                })
        })
    });
    let results = match outcome.map_err(|e| PushError::new_err(e.message))? {
        Reply::Ran(results) => results,
        other => return Err(unexpected(other)),
    };
    let dict = PyDict::new(py);
    for (node, result) in results {
        match result {
            Ok(v) => dict.set_item(node, (true, to_py(py, &v)?))?,
            Err(e) => dict.set_item(node, (false, e.message))?,
        }
    }
    Ok(dict.into_any().unbind())
}

/// The node registry as dicts.
#[pyfunction]
fn nodes(py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
    let ctx = context()?;
    let voters: std::collections::BTreeMap<u64, bool> = py
        .detach(|| ctx.cluster.members())
        .map_err(|e| PushError::new_err(e.message))?
        .into_iter()
        .map(|m| (m.id, m.voter))
        .collect();
    match call(py, Op::Nodes)? {
        Reply::Nodes(entries) => entries
            .into_iter()
            .map(|e| {
                let d = PyDict::new(py);
                d.set_item("id", e.info.id)?;
                d.set_item("addr", e.info.addr)?;
                d.set_item("http", e.info.http)?;
                d.set_item("alive", e.alive)?;
                d.set_item("cores", e.info.cores)?;
                d.set_item("memory_mb", e.info.memory_mb)?;
                d.set_item("gpu", e.info.gpu)?;
                d.set_item("tags", e.info.tags)?;
                d.set_item("voter", voters.get(&e.info.id).copied())?;
                Ok(d.into_any().unbind())
            })
            .collect(),
        other => Err(unexpected(other)),
    }
}

/// The stored name of `name` in `app`'s realm (see `push_protocol::realm`).
#[pyfunction]
fn qualify(app: String, name: String) -> PyResult<String> {
    realm::qualify(&app, &name).map_err(|e| PushError::new_err(e.to_string()))
}

/// The value of secret `name` of `app`, or None. Code reads its app's secrets as the node,
/// which the edge does not check.
#[pyfunction]
fn secret_get(py: Python<'_>, app: String, name: String) -> PyResult<Option<String>> {
    match call(py, Op::SecretGet { app, name })? {
        Reply::Secret(value) => Ok(value.map(|v| v.0)),
        other => Err(unexpected(other)),
    }
}

/// Secret names, and config entries as (name, value).
type SettingsOf = (Vec<String>, Vec<(String, String)>);

/// Secret names and config entries (name, value) of `app`: what a WSGI/ASGI app of its own
/// pool gets in its environment (the secrets' values are read one by one).
#[pyfunction]
fn settings_of(py: Python<'_>, app: String) -> PyResult<SettingsOf> {
    let secrets = match call(py, Op::Secrets { app: app.clone() })? {
        Reply::Settings(entries) => entries.into_iter().map(|e| e.name).collect(),
        other => return Err(unexpected(other)),
    };
    let config = match call(py, Op::Config { app })? {
        Reply::Settings(entries) => entries
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect(),
        other => return Err(unexpected(other)),
    };
    Ok((secrets, config))
}

/// The value of config entry `key` of `app`, or `default`.
#[pyfunction]
fn config_get(py: Python<'_>, app: String, key: String, default: Py<PyAny>) -> PyResult<Py<PyAny>> {
    match call(py, Op::Config { app })? {
        Reply::Settings(entries) => match entries.into_iter().find(|e| e.name == key) {
            Some(entry) => Ok(entry
                .value
                .unwrap_or_default()
                .into_pyobject(py)?
                .into_any()
                .unbind()),
            None => Ok(default),
        },
        other => Err(unexpected(other)),
    }
}

/// Publishes `data` on `app`'s channel `channel`; returns the event's id.
#[pyfunction]
fn publish(py: Python<'_>, app: String, channel: String, data: String) -> PyResult<u64> {
    match call(py, Op::Publish { app, channel, data })? {
        Reply::Published { id, .. } => Ok(id),
        other => Err(unexpected(other)),
    }
}

/// One app `logging` record: becomes a tracing event (node log sink and `push logs` ring).
/// Works without a node too (the record still reaches the process's subscriber).
#[pyfunction]
#[pyo3(signature = (levelno, logger, message, app=None, version=None, source=None))]
fn log(
    py: Python<'_>,
    levelno: i64,
    logger: String,
    message: String,
    app: Option<String>,
    version: Option<u64>,
    source: Option<String>,
) {
    let record = super::wire::AppLog {
        levelno,
        logger,
        message,
        app,
        version,
        source,
    };
    py.detach(|| match CONTEXT.get() {
        Some(ctx) => ctx.cluster.log(record),
        None => crate::logs::app_event(
            record.levelno,
            &record.logger,
            &record.message,
            record.app.as_deref(),
            record.version,
            record.source.as_deref(),
        ),
    });
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
    m.add_function(wrap_pyfunction!(ts_append, &m)?)?;
    m.add_function(wrap_pyfunction!(ts_range, &m)?)?;
    m.add_function(wrap_pyfunction!(ts_stats, &m)?)?;
    m.add_function(wrap_pyfunction!(ts_cursor, &m)?)?;
    m.add_function(wrap_pyfunction!(ts_after, &m)?)?;
    m.add_function(wrap_pyfunction!(ts_commit, &m)?)?;
    m.add_function(wrap_pyfunction!(run, &m)?)?;
    m.add_function(wrap_pyfunction!(nodes, &m)?)?;
    m.add_function(wrap_pyfunction!(log, &m)?)?;
    m.add_function(wrap_pyfunction!(publish, &m)?)?;
    m.add_function(wrap_pyfunction!(qualify, &m)?)?;
    m.add_function(wrap_pyfunction!(secret_get, &m)?)?;
    m.add_function(wrap_pyfunction!(config_get, &m)?)?;
    m.add_function(wrap_pyfunction!(settings_of, &m)?)?;
    m.add("PushError", py.get_type::<PushError>())?;
    Ok(m)
}
