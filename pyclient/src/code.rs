//! The code store and the cluster's state: deploy (upload what the store lacks, then commit),
//! versions, rollback (a HEAD move) and a node's status.

use std::collections::{BTreeMap, BTreeSet};

use push_protocol::{ByteBuf, CommitOutcome, Op, Reply, MAX_BLOB_BATCH};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sha2::{Digest, Sha256};

use crate::conn::Native;
use crate::convert::record;
use crate::errors::{unexpected, Kind};

/// Upload batches stay under this many bytes (as `push deploy`'s do).
const BATCH_BYTES: usize = 1 << 20;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(deploy, m)?)?;
    m.add_function(wrap_pyfunction!(versions, m)?)?;
    m.add_function(wrap_pyfunction!(activate, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    Ok(())
}

/// The code store's address of a module's source: its SHA-256, in hex.
fn blob_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Uploads the modules the store lacks and records a version of `app` from `files` (path ->
/// source). Returns a dict: `version`, `activated`, `changed` (False when the tree equals
/// HEAD's, `version` then being HEAD), `uploaded` (modules sent).
#[pyfunction]
fn deploy(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    app: String,
    files: BTreeMap<String, Vec<u8>>,
    message: String,
    author: String,
    activate: bool,
) -> PyResult<Py<PyAny>> {
    let native = conn.get();
    let tree: BTreeMap<String, String> = files
        .iter()
        .map(|(path, bytes)| (path.clone(), blob_hash(bytes)))
        .collect();
    let hashes: Vec<String> = tree.values().cloned().collect();
    let missing: BTreeSet<String> =
        match native.call(py, Op::MissingBlobs { hashes }, Kind::Read)? {
            Reply::Missing(missing) => missing.into_iter().collect(),
            other => return Err(unexpected(&other)),
        };
    let mut sent = BTreeSet::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for bytes in files.values() {
        let hash = blob_hash(bytes);
        if !missing.contains(&hash) || !sent.insert(hash) {
            continue;
        }
        if !batch.is_empty() && batch_bytes + bytes.len() > BATCH_BYTES.min(MAX_BLOB_BATCH) {
            let blobs = std::mem::take(&mut batch);
            native.call(py, Op::PutBlobs { blobs }, Kind::Write)?;
            batch_bytes = 0;
        }
        batch_bytes += bytes.len();
        batch.push(ByteBuf::from(bytes.clone()));
    }
    if !batch.is_empty() {
        native.call(py, Op::PutBlobs { blobs: batch }, Kind::Write)?;
    }
    let commit = Op::Commit {
        app,
        tree,
        message,
        author,
        activate,
    };
    let out = PyDict::new(py);
    match native.call(py, commit, Kind::Write)? {
        Reply::Committed(CommitOutcome::Created { version, activated }) => {
            out.set_item("version", version)?;
            out.set_item("activated", activated)?;
            out.set_item("changed", true)?;
        }
        Reply::Committed(CommitOutcome::Unchanged { head }) => {
            out.set_item("version", head)?;
            out.set_item("activated", false)?;
            out.set_item("changed", false)?;
        }
        other => return Err(unexpected(&other)),
    }
    out.set_item("uploaded", sent.len())?;
    Ok(out.into_any().unbind())
}

/// (HEAD, versions as dicts oldest first) of `app`.
#[pyfunction]
fn versions(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    app: String,
) -> PyResult<(Option<u64>, Py<PyAny>)> {
    match conn.get().call(py, Op::Versions { app }, Kind::Read)? {
        Reply::Versions { head, versions } => Ok((head, record(py, &versions)?)),
        other => Err(unexpected(&other)),
    }
}

/// Moves `app`'s HEAD to `version` (its parent when None); returns (from, to).
#[pyfunction]
#[pyo3(signature = (conn, app, version=None))]
fn activate(
    py: Python<'_>,
    conn: &Bound<'_, Native>,
    app: String,
    version: Option<u64>,
) -> PyResult<(Option<u64>, u64)> {
    match conn
        .get()
        .call(py, Op::Activate { app, version }, Kind::Write)?
    {
        Reply::Activated { from, to } => Ok((from, to)),
        other => Err(unexpected(&other)),
    }
}

/// The node's own report (role, term, leader, members, HEADs, ...) as a dict.
#[pyfunction]
fn status(py: Python<'_>, conn: &Bound<'_, Native>) -> PyResult<Py<PyAny>> {
    match conn.get().call(py, Op::Status, Kind::Read)? {
        Reply::Status(status) => record(py, &*status),
        other => Err(unexpected(&other)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blobs_are_addressed_by_their_sha256() {
        assert_eq!(
            super::blob_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
