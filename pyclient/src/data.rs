//! Kv maps, queues, timeseries and channels: the requests behind `Connection.kv`, `.queue`,
//! `.timeseries` and `.channel`, the same requests (and the same answers) as the in-cluster `push` module.

use push_protocol::{Op, ReadMode, Reply, TsConfig, TsPoint};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::conn::Native;
use crate::convert::{from_py, optional, to_py};
use crate::errors::{unexpected, Kind};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(qualify, m)?)?;
    m.add_function(wrap_pyfunction!(kv_get, m)?)?;
    m.add_function(wrap_pyfunction!(kv_set, m)?)?;
    m.add_function(wrap_pyfunction!(kv_delete, m)?)?;
    m.add_function(wrap_pyfunction!(kv_cas, m)?)?;
    m.add_function(wrap_pyfunction!(kv_keys, m)?)?;
    m.add_function(wrap_pyfunction!(queue_put, m)?)?;
    m.add_function(wrap_pyfunction!(queue_take, m)?)?;
    m.add_function(wrap_pyfunction!(queue_ack, m)?)?;
    m.add_function(wrap_pyfunction!(queue_peek, m)?)?;
    m.add_function(wrap_pyfunction!(queue_stats, m)?)?;
    m.add_function(wrap_pyfunction!(ts_append, m)?)?;
    m.add_function(wrap_pyfunction!(ts_range, m)?)?;
    m.add_function(wrap_pyfunction!(ts_stats, m)?)?;
    m.add_function(wrap_pyfunction!(publish, m)?)?;
    Ok(())
}

/// The stored name of `name` in `app`'s realm (refused when either holds a control character).
#[pyfunction]
fn qualify(app: &str, name: &str) -> PyResult<String> {
    push_protocol::realm::qualify(app, name).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// (found, value) of `key` in map `map`.
#[pyfunction]
fn kv_get(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    map: String,
    key: String,
    stale: bool,
) -> PyResult<(bool, Py<PyAny>)> {
    let read = if stale {
        ReadMode::Stale
    } else {
        ReadMode::Linearizable
    };
    match conn
        .get()
        .call(py, Op::KvGet { map, key, read }, Kind::Read)?
    {
        Reply::Value(Some(v)) => Ok((true, to_py(py, &v)?)),
        Reply::Value(None) => Ok((false, py.None())),
        other => Err(unexpected(&other)),
    }
}

#[pyfunction]
fn kv_set(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    map: String,
    key: String,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let value = from_py(value)?;
    match conn
        .get()
        .call(py, Op::KvSet { map, key, value }, Kind::Write)?
    {
        Reply::Written { .. } => Ok(()),
        other => Err(unexpected(&other)),
    }
}

/// Whether the key existed.
#[pyfunction]
fn kv_delete(py: Python<'_>, conn: &Bound<'_, Native>, map: String, key: String) -> PyResult<bool> {
    match conn
        .get()
        .call(py, Op::KvDelete { map, key }, Kind::Write)?
    {
        Reply::Deleted { existed, .. } => Ok(existed),
        other => Err(unexpected(&other)),
    }
}

#[pyfunction]
fn kv_cas(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    map: String,
    key: String,
    expected: &Bound<'_, PyAny>,
    new: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let (expected, new) = (optional(expected)?, optional(new)?);
    let op = Op::KvCas {
        map,
        key,
        expected,
        new,
    };
    match conn.get().call(py, op, Kind::Write)? {
        Reply::Cas { ok, .. } => Ok(ok),
        other => Err(unexpected(&other)),
    }
}

#[pyfunction]
fn kv_keys(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    map: String,
    prefix: String,
) -> PyResult<Vec<String>> {
    let op = Op::KvList {
        map,
        prefix,
        read: ReadMode::Linearizable,
    };
    match conn.get().call(py, op, Kind::Read)? {
        Reply::Keys(keys) => Ok(keys),
        other => Err(unexpected(&other)),
    }
}

/// The ids of the appended values.
#[pyfunction]
fn queue_put(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    queue: String,
    values: Vec<Bound<'_, PyAny>>,
) -> PyResult<Vec<u64>> {
    let values = values.iter().map(from_py).collect::<PyResult<Vec<_>>>()?;
    match conn
        .get()
        .call(py, Op::QueuePut { queue, values }, Kind::Write)?
    {
        Reply::Put { ids } => Ok(ids),
        other => Err(unexpected(&other)),
    }
}

/// (id, value, deliveries) of the leased item, or None when none came in time.
#[pyfunction]
fn queue_take(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    queue: String,
    lease_ms: u64,
    wait_ms: u64,
) -> PyResult<Option<(u64, Py<PyAny>, u32)>> {
    let op = Op::QueueTake {
        queue,
        lease_ms,
        wait_ms,
    };
    match conn.get().call(py, op, Kind::Write)? {
        Reply::Taken(Some(item)) => Ok(Some((item.id, to_py(py, &item.value)?, item.deliveries))),
        Reply::Taken(None) => Ok(None),
        other => Err(unexpected(&other)),
    }
}

#[pyfunction]
fn queue_ack(py: Python<'_>, conn: &Bound<'_, Native>, queue: String, id: u64) -> PyResult<bool> {
    match conn
        .get()
        .call(py, Op::QueueAck { queue, id }, Kind::Write)?
    {
        Reply::Acked { ok } => Ok(ok),
        other => Err(unexpected(&other)),
    }
}

#[pyfunction]
fn queue_peek(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    queue: String,
    n: usize,
) -> PyResult<Vec<Py<PyAny>>> {
    match conn
        .get()
        .call(py, Op::QueuePeek { queue, n }, Kind::Read)?
    {
        Reply::Peeked(items) => items.iter().map(|i| to_py(py, &i.value)).collect(),
        other => Err(unexpected(&other)),
    }
}

/// (ready, leased) of one queue.
#[pyfunction]
fn queue_stats(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    queue: String,
) -> PyResult<(usize, usize)> {
    match conn.get().call(py, Op::QueueStats, Kind::Read)? {
        Reply::QueueStats(stats) => Ok(stats
            .into_iter()
            .find(|s| s.name == queue)
            .map_or((0, 0), |s| (s.ready, s.leased))),
        other => Err(unexpected(&other)),
    }
}

type PointRow<'py> = (Option<i64>, Option<String>, Bound<'py, PyAny>);

/// Appends `(t_ms, key, value)` rows; `config` is (max_age_ms, max_points, partitions).
#[pyfunction]
#[pyo3(signature = (conn, series, rows, config=None))]
fn ts_append(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    series: String,
    rows: Vec<PointRow<'_>>,
    config: Option<(Option<u64>, Option<u64>, u32)>,
) -> PyResult<Vec<u64>> {
    let points = rows
        .iter()
        .map(|(t, k, v)| Ok((*t, k.clone(), from_py(v)?)))
        .collect::<PyResult<Vec<_>>>()?;
    let config = config.map(|(max_age_ms, max_points, partitions)| TsConfig {
        max_age_ms,
        max_points,
        partitions: partitions.max(1),
    });
    let op = Op::TsAppend {
        series,
        points,
        config,
    };
    match conn.get().call(py, op, Kind::Write)? {
        Reply::Appended { seqs } => Ok(seqs),
        other => Err(unexpected(&other)),
    }
}

fn point_tuple(py: Python<'_>, p: &TsPoint) -> PyResult<Py<PyAny>> {
    let t = p.t_ms as f64 / 1000.0;
    Ok((t, p.key.clone(), to_py(py, &p.value)?)
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

/// `(t, key, value)` points with `t0 <= t_ms < t1`, or the last `last` points.
#[pyfunction]
#[pyo3(signature = (conn, series, t0=None, t1=None, last=None))]
fn ts_range(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
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
    match conn.get().call(py, op, Kind::Read)? {
        Reply::Points(points) => points.iter().map(|p| point_tuple(py, p)).collect(),
        other => Err(unexpected(&other)),
    }
}

/// Every timeseries: name, points, appended.
#[pyfunction]
fn ts_stats(py: Python<'_>, conn: &Bound<'_, Native>) -> PyResult<Vec<Py<PyAny>>> {
    match conn.get().call(py, Op::TsStats, Kind::Read)? {
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
        other => Err(unexpected(&other)),
    }
}

/// Publishes `data` on `app`'s channel `channel`; the event's id.
#[pyfunction]
fn publish(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    app: String,
    channel: String,
    data: String,
) -> PyResult<u64> {
    match conn
        .get()
        .call(py, Op::Publish { app, channel, data }, Kind::Write)?
    {
        Reply::Published { id, .. } => Ok(id),
        other => Err(unexpected(&other)),
    }
}
