//! [`Native`]: a connection to one node. Network calls run on one shared tokio runtime and
//! always with the GIL released, so other Python threads (and asyncio's executor threads)
//! run meanwhile. A connection that dropped is made again before the next request is sent,
//! so a request is never sent on a connection already known to be gone.

use std::sync::{Arc, Mutex, OnceLock};

use push_protocol::{Client, ClientError, Op, Reply};
use pyo3::prelude::*;

use crate::errors::{self, Kind};

/// The runtime every connection of this process shares: one worker thread reads replies;
/// callers block on their own thread (without the GIL) until theirs arrives.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("push-client")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the client's I/O thread: {e}"))
    })
}

/// What a connection needs without the GIL.
pub struct Inner {
    pub addr: String,
    token: String,
    client: Mutex<Option<Arc<Client>>>,
}

impl Inner {
    /// The live client, connecting (again) when there is none or it was closed.
    pub fn client(&self) -> Result<Arc<Client>, ClientError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Arc::new(runtime().block_on(Client::connect_as(
            &self.addr,
            &self.token,
            "push-client-python",
        ))?);
        *slot = Some(client.clone());
        Ok(client)
    }

    pub fn call(&self, op: Op) -> Result<Reply, ClientError> {
        let client = self.client()?;
        runtime().block_on(client.call(op))
    }

    fn close(&self) {
        self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// A connection to one Push node (the Python package wraps it; use `push_client.connect`).
#[pyclass(module = "push_client._native", frozen)]
pub struct Native {
    pub inner: Arc<Inner>,
}

impl Native {
    /// Sends `op` (a read or a write) with the GIL released; maps a failure to the right
    /// exception.
    pub fn call(&self, py: Python<'_>, op: Op, kind: Kind) -> PyResult<Reply> {
        let inner = self.inner.clone();
        py.detach(move || inner.call(op))
            .map_err(|e| errors::to_py(py, e, kind))
    }
}

#[pymethods]
impl Native {
    /// Connects to the node at `addr` ("host:port") with `token` (the cluster token or a
    /// user's secret).
    #[new]
    fn new(py: Python<'_>, addr: String, token: String) -> PyResult<Native> {
        let inner = Arc::new(Inner {
            addr,
            token,
            client: Mutex::new(None),
        });
        let connecting = inner.clone();
        py.detach(move || connecting.client())
            .map_err(|e| errors::to_py(py, e, Kind::Read))?;
        Ok(Native { inner })
    }

    /// The address this connection talks to.
    #[getter]
    fn addr(&self) -> String {
        self.inner.addr.clone()
    }

    /// (node id, push version, format) from the node's handshake.
    fn welcome(&self, py: Python<'_>) -> PyResult<(u64, String, u32)> {
        let inner = self.inner.clone();
        let client = py
            .detach(move || inner.client())
            .map_err(|e| errors::to_py(py, e, Kind::Read))?;
        let w = client.welcome();
        Ok((w.node_id, w.push_version.clone(), w.protocol))
    }

    /// Closes the connection; a later call connects again.
    fn close(&self) {
        self.inner.close();
    }
}
