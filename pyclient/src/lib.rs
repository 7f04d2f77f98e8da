//! push_client's native core (`push_client._native`): a connection to one Push node and the
//! requests the Python package (`python/push_client/`) builds its API from.
//!
//! Layout:
//! - [`conn`]: [`conn::Native`], one node's address, token and client; every network call
//!   runs on a shared tokio runtime with the GIL released.
//! - [`errors`]: the exception classes and how a [`push_protocol::ClientError`] maps onto them.
//! - [`convert`]: [`push_protocol::Value`] and reply records to and from Python objects.
//! - [`data`]: kv maps, queues and timeseries.
//! - [`code`]: deploy, versions, rollback, status.
//! - [`eval`]: sessions, eval with streamed output, completion, inspection, interrupt.

use pyo3::prelude::*;

mod code;
mod conn;
mod convert;
mod data;
mod errors;
mod eval;

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<conn::Native>()?;
    errors::register(m)?;
    data::register(m)?;
    code::register(m)?;
    eval::register(m)?;
    m.add("PUSH_VERSION", push_protocol::PUSH_VERSION)?;
    m.add("FORMAT_VERSION", push_protocol::FORMAT_VERSION)?;
    Ok(())
}
