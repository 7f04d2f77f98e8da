//! The exception classes of push_client and the mapping from a failed call onto them, so a
//! script can tell "not allowed" from "retry" from "check before retrying".

use push_protocol::{ClientError, ErrorCode};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    push_client,
    PushError,
    PyException,
    "A request to the cluster failed. `code` names the node's error code (\"NotFound\", \"Invalid\", ...) or is None when the failure was local (a lost connection)."
);
pyo3::create_exception!(
    push_client,
    ConnectError,
    PushError,
    "The node could not be reached or the handshake failed: check the address, that a node runs there, and the TLS settings."
);
pyo3::create_exception!(
    push_client,
    RefusedError,
    PushError,
    "The node refused the request: a wrong token, or a user whose role does not allow it. `role` names the role the request needs (\"operator\", \"deployer\", \"developer\", \"admin\"...), when the node said."
);
pyo3::create_exception!(
    push_client,
    NotLeaderError,
    PushError,
    "No leader could take the request (an election in progress, or no majority up). Nothing was written: retry shortly, and check `push status` if it lasts."
);
pyo3::create_exception!(
    push_client,
    OutcomeUnknownError,
    PushError,
    "A write was sent, but its answer was lost (the connection or the leader went away). It may or may not have been applied: read back before retrying."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PushError", py.get_type::<PushError>())?;
    m.add("ConnectError", py.get_type::<ConnectError>())?;
    m.add("RefusedError", py.get_type::<RefusedError>())?;
    m.add("NotLeaderError", py.get_type::<NotLeaderError>())?;
    m.add("OutcomeUnknownError", py.get_type::<OutcomeUnknownError>())?;
    Ok(())
}

/// Whether a request changes the cluster (so a lost answer leaves its outcome unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

/// The role a refusal says is needed ("`KvSet` needs the operator role; you are ...").
pub fn needed_role(message: &str) -> Option<String> {
    let rest = message.split("needs the ").nth(1)?;
    let role = rest.split_whitespace().next()?;
    rest[role.len()..]
        .trim_start()
        .starts_with("role")
        .then(|| role.to_string())
}

/// The Python exception for a failed call of `kind`.
pub fn to_py(py: Python<'_>, error: ClientError, kind: Kind) -> PyErr {
    let code = error.code();
    let message = error.to_string();
    let err = match (&error, code) {
        (ClientError::Connect { .. } | ClientError::ConnectTimeout(_), _) => {
            ConnectError::new_err(message.clone())
        }
        (_, Some(ErrorCode::Forbidden | ErrorCode::Unauthorized)) => {
            RefusedError::new_err(message.clone())
        }
        (_, Some(ErrorCode::NoLeader)) => NotLeaderError::new_err(message.clone()),
        (_, Some(ErrorCode::Unavailable)) if kind == Kind::Write => {
            OutcomeUnknownError::new_err(message.clone())
        }
        (ClientError::Closed { .. }, None) if kind == Kind::Write => {
            OutcomeUnknownError::new_err(format!(
                "{message}; the write was sent, so it may or may not have been applied: read back before retrying"
            ))
        }
        (ClientError::Refused(_), _) => ConnectError::new_err(message.clone()),
        _ => PushError::new_err(message.clone()),
    };
    let value = err.value(py);
    let code = code.map(|c| format!("{c:?}"));
    let role = needed_role(&message);
    // Attributes on a fresh exception object cannot fail in practice; if they did, the
    // exception still carries its message.
    let _ = value.setattr("code", code);
    let _ = value.setattr("role", role);
    err
}

/// A reply of the wrong kind: a node and client of different releases, or a bug.
pub fn unexpected(reply: &push_protocol::Reply) -> PyErr {
    PushError::new_err(format!(
        "unexpected reply from the node: {reply:?}; are client and node the same Push release?"
    ))
}

#[cfg(test)]
mod tests {
    use super::needed_role;

    #[test]
    fn reads_the_role_a_refusal_names() {
        let m = "`KvSet` needs the operator role; you are user \"bob\" (viewer). Ask an admin";
        assert_eq!(needed_role(m).as_deref(), Some("operator"));
        let m = "`Commit` on app \"shop\" needs the deployer role on that app; you are x";
        assert_eq!(needed_role(m).as_deref(), Some("deployer"));
        assert_eq!(needed_role("missing or wrong cluster token"), None);
        assert_eq!(needed_role("it needs the cluster token"), None);
    }
}
