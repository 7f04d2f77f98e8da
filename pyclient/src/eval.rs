//! Live evaluation on the node, the requests the REPL and `push eval` send: sessions, eval
//! with stdout/stderr streamed to a Python callback as the node prints them, completion,
//! inspection, is-complete and interrupt.

use push_protocol::{ClientError, ErrorBody, EvalResult, Op, Reply, Stream};
use pyo3::prelude::*;

use crate::conn::{runtime, Native};
use crate::convert::record;
use crate::errors::{self, unexpected, Kind};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(session_open, m)?)?;
    m.add_function(wrap_pyfunction!(session_close, m)?)?;
    m.add_function(wrap_pyfunction!(eval, m)?)?;
    m.add_function(wrap_pyfunction!(eval_all, m)?)?;
    m.add_function(wrap_pyfunction!(complete, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(is_complete, m)?)?;
    m.add_function(wrap_pyfunction!(interrupt, m)?)?;
    Ok(())
}

/// Opens a session (its own namespace) on the node, on Python worker `worker` if given.
#[pyfunction]
#[pyo3(signature = (conn, worker=None))]
fn session_open(py: Python<'_>, conn: &Bound<'_, Native>, worker: Option<u32>) -> PyResult<u64> {
    let op = match worker {
        Some(worker) => Op::SessionOpenOn { worker, pool: None },
        None => Op::SessionOpen,
    };
    match conn.get().call(py, op, Kind::Read)? {
        Reply::Session { id } => Ok(id),
        other => Err(unexpected(&other)),
    }
}

/// Closes a session; whether it existed.
#[pyfunction]
fn session_close(py: Python<'_>, conn: &Bound<'_, Native>, session: u64) -> PyResult<bool> {
    match conn
        .get()
        .call(py, Op::SessionClose { session }, Kind::Read)?
    {
        Reply::Closed { existed } => Ok(existed),
        other => Err(unexpected(&other)),
    }
}

/// Evaluates `code` in `session` (None: a throwaway namespace) or inside app module `module`.
/// Each chunk of output is passed to `on_output(stream, text)` ("stdout"/"stderr") as it
/// arrives. Returns the result as a dict: value (a repr), type_name, error (type_name,
/// message, frames, formatted), truncated, micros, node.
#[pyfunction]
#[pyo3(signature = (conn, code, session=None, module=None, on_output=None))]
fn eval(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    code: String,
    session: Option<u64>,
    module: Option<String>,
    on_output: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let inner = conn.get().inner.clone();
    let op = Op::Eval {
        session,
        code,
        module,
    };
    // The first exception the callback raised: the eval still runs to its end (its output
    // has nowhere else to go), then the exception is raised here.
    let mut callback_error: Option<PyErr> = None;
    let outcome = py.detach(|| -> Result<Result<EvalResult, ErrorBody>, ClientError> {
        let client = inner.client()?;
        runtime().block_on(async {
            let mut replies = client.call_stream(op).await?;
            let mut last = None;
            while let Some(outcome) = replies.recv().await {
                match outcome {
                    Ok(Reply::Output { stream, text }) => {
                        let Some(callback) = &on_output else { continue };
                        let name = match stream {
                            Stream::Stdout => "stdout",
                            Stream::Stderr => "stderr",
                        };
                        Python::attach(|py| {
                            if let Err(e) = callback.call1(py, (name, text)) {
                                callback_error.get_or_insert(e);
                            }
                        });
                    }
                    other => last = Some(other),
                }
            }
            match last {
                Some(Ok(Reply::Evaluated(result))) => Ok(Ok(*result)),
                Some(Ok(other)) => Ok(Err(ErrorBody::new(
                    push_protocol::ErrorCode::Internal,
                    format!("unexpected reply from the node: {other:?}"),
                ))),
                Some(Err(body)) => Ok(Err(body)),
                None => Err(ClientError::Closed {
                    addr: client.addr().to_string(),
                    reason: "the node closed the connection before the result".into(),
                }),
            }
        })
    });
    if let Some(e) = callback_error {
        return Err(e);
    }
    match outcome {
        Ok(Ok(result)) => record(py, &result),
        Ok(Err(body)) => Err(errors::to_py(py, ClientError::Server(body), Kind::Read)),
        Err(e) => Err(errors::to_py(py, e, Kind::Read)),
    }
}

/// Evaluates `code` on every node: {node id: result dict, or the error text}.
#[pyfunction]
fn eval_all(py: Python<'_>, conn: &Bound<'_, Native>, code: String) -> PyResult<Py<PyAny>> {
    match conn.get().call(py, Op::EvalAll { code }, Kind::Read)? {
        Reply::EvaluatedAll(results) => {
            let out = pyo3::types::PyDict::new(py);
            for (node, result) in results {
                match result {
                    Ok(r) => out.set_item(node, record(py, &r)?)?,
                    Err(e) => out.set_item(node, e.message)?,
                }
            }
            Ok(out.into_any().unbind())
        }
        other => Err(unexpected(&other)),
    }
}

/// (start byte offset, candidates) for the cursor at byte offset `cursor` of `code`, in
/// `module`'s namespace when given, else in `session`'s.
#[pyfunction]
#[pyo3(signature = (conn, code, cursor, session=None, module=None))]
fn complete(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    code: String,
    cursor: usize,
    session: Option<u64>,
    module: Option<String>,
) -> PyResult<(usize, Vec<String>)> {
    let op = Op::Complete {
        session,
        code,
        cursor,
        module,
    };
    match conn.get().call(py, op, Kind::Read)? {
        Reply::Completions { start, items } => Ok((start, items)),
        other => Err(unexpected(&other)),
    }
}

/// What the node knows of `expr`'s value: type_name, signature, doc, file, line, repr.
#[pyfunction]
#[pyo3(signature = (conn, expr, session=None))]
fn inspect(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    expr: String,
    session: Option<u64>,
) -> PyResult<Py<PyAny>> {
    match conn
        .get()
        .call(py, Op::Inspect { session, expr }, Kind::Read)?
    {
        Reply::Inspected(found) => record(py, &*found),
        other => Err(unexpected(&other)),
    }
}

/// Whether `code` is a complete statement (False: it needs more lines).
#[pyfunction]
fn is_complete(py: Python<'_>, conn: &Bound<'_, Native>, code: String) -> PyResult<bool> {
    match conn.get().call(py, Op::IsComplete { code }, Kind::Read)? {
        Reply::IsComplete { complete } => Ok(complete),
        other => Err(unexpected(&other)),
    }
}

/// Interrupts the evaluation running in `session`; whether one was running.
#[pyfunction]
fn interrupt(py: Python<'_>, conn: &Bound<'_, Native>, session: u64) -> PyResult<bool> {
    match conn.get().call(py, Op::Interrupt { session }, Kind::Read)? {
        Reply::Interrupted { running } => Ok(running),
        other => Err(unexpected(&other)),
    }
}
