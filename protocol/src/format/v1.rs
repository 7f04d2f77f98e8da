//! Format 1, kept readable: bincode 1.3 with varint integers, and the shapes that changed
//! since (`NodeStatus` without the format fields).
//!
//! bincode is unmaintained (RUSTSEC-2025-0141), so nothing new is written in it: it stays
//! only to read data dirs of format 1 and to speak with nodes and clients of format 1 during
//! a rolling upgrade. It goes when [`super::MIN_FORMAT_VERSION`] passes 1.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::message::{ErrorBody, Outcome, Reply};
use crate::records::{Member, NodeStatus};

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// Encodes in format 1.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    options(u64::MAX)
        .serialize(value)
        .map_err(|e| CodecError::new(e.to_string()))
}

/// Decodes a format-1 value from exactly `bytes`; never allocates more than the input could
/// describe (the limit is the input length).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    super::decoding(1, || {
        options(bytes.len() as u64 + 64)
            .deserialize(bytes)
            .map_err(|e| CodecError::new(e.to_string()))
    })
}

/// `NodeStatus` as format 1 knew it.
#[derive(Serialize, Deserialize)]
struct NodeStatusV1 {
    id: u64,
    addr: String,
    role: String,
    term: u64,
    leader: Option<u64>,
    last_log_index: Option<u64>,
    committed_index: Option<u64>,
    applied_index: Option<u64>,
    snapshot_index: Option<u64>,
    members: Vec<Member>,
    matched: Vec<(u64, Option<u64>)>,
    heads: Vec<(String, u64)>,
    push_version: String,
    uptime_ms: u64,
    pid: u32,
    http: Option<String>,
    serving: Vec<(String, u64)>,
    load_errors: Vec<(String, u64, String)>,
    rss_bytes: u64,
    cpu_ms: u64,
    python_version: String,
    fd_limit: u64,
    fds_open: u64,
}

impl From<NodeStatus> for NodeStatusV1 {
    fn from(s: NodeStatus) -> NodeStatusV1 {
        NodeStatusV1 {
            id: s.id,
            addr: s.addr,
            role: s.role,
            term: s.term,
            leader: s.leader,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            members: s.members,
            matched: s.matched,
            heads: s.heads,
            push_version: s.push_version,
            uptime_ms: s.uptime_ms,
            pid: s.pid,
            http: s.http,
            serving: s.serving,
            load_errors: s.load_errors,
            rss_bytes: s.rss_bytes,
            cpu_ms: s.cpu_ms,
            python_version: s.python_version,
            fd_limit: s.fd_limit,
            fds_open: s.fds_open,
        }
    }
}

impl From<NodeStatusV1> for NodeStatus {
    fn from(s: NodeStatusV1) -> NodeStatus {
        NodeStatus {
            id: s.id,
            addr: s.addr,
            role: s.role,
            term: s.term,
            leader: s.leader,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            members: s.members,
            matched: s.matched,
            heads: s.heads,
            push_version: s.push_version,
            uptime_ms: s.uptime_ms,
            pid: s.pid,
            http: s.http,
            serving: s.serving,
            load_errors: s.load_errors,
            rss_bytes: s.rss_bytes,
            cpu_ms: s.cpu_ms,
            python_version: s.python_version,
            fd_limit: s.fd_limit,
            fds_open: s.fds_open,
            // A format-1 node writes and speaks format 1 only.
            format_version: 1,
            min_format_version: 1,
            workers: Vec::new(),
        }
    }
}

/// The one `Reply` variant whose shape changed, at its format-1 variant index (1); bincode
/// numbers variants by position, so `Pong` keeps `Status` in place.
#[derive(Serialize, Deserialize)]
enum StatusReplyV1 {
    Pong,
    Status(Box<NodeStatusV1>),
}

/// Encodes a response body as a format-1 node would.
pub fn encode_outcome(outcome: &Outcome) -> Result<Vec<u8>, CodecError> {
    match outcome {
        Ok(Reply::Status(status)) => {
            let old: Result<StatusReplyV1, ErrorBody> = Ok(StatusReplyV1::Status(Box::new(
                NodeStatusV1::from((**status).clone()),
            )));
            encode(&old)
        }
        other => encode(other),
    }
}

/// Decodes a response body written by a format-1 node.
pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, CodecError> {
    match decode::<Outcome>(bytes) {
        Ok(outcome) => Ok(outcome),
        Err(e) => match decode::<Result<StatusReplyV1, ErrorBody>>(bytes) {
            Ok(Ok(StatusReplyV1::Status(old))) => Ok(Ok(Reply::Status(Box::new((*old).into())))),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn status() -> NodeStatus {
        NodeStatus {
            id: 3,
            addr: "127.0.0.1:7003".into(),
            role: "follower".into(),
            term: 9,
            leader: Some(1),
            last_log_index: Some(40),
            committed_index: Some(40),
            applied_index: Some(39),
            snapshot_index: None,
            members: vec![],
            matched: vec![(1, Some(40))],
            heads: vec![("main".into(), 2)],
            push_version: "0.1.0".into(),
            uptime_ms: 1000,
            pid: 42,
            http: None,
            serving: vec![],
            load_errors: vec![],
            rss_bytes: 1 << 20,
            cpu_ms: 5,
            python_version: "3.11.7".into(),
            fd_limit: 1024,
            fds_open: 12,
            format_version: 2,
            min_format_version: 1,
            workers: Vec::new(),
        }
    }

    #[test]
    fn status_travels_in_the_old_shape_and_comes_back() {
        let outcome: Outcome = Ok(Reply::Status(Box::new(status())));
        let bytes = encode_outcome(&outcome).unwrap();
        // What a format-1 client decodes: the old struct, no trailing bytes.
        let old: Result<StatusReplyV1, ErrorBody> = decode(&bytes).unwrap();
        assert!(matches!(old, Ok(StatusReplyV1::Status(s)) if s.id == 3 && s.fds_open == 12));
        let Ok(Reply::Status(back)) = decode_outcome(&bytes).unwrap() else {
            panic!("not a status");
        };
        assert_eq!((back.id, back.term, back.format_version), (3, 9, 1));
        // Other replies are unchanged.
        let pong = encode_outcome(&Ok(Reply::Pong)).unwrap();
        assert!(matches!(decode_outcome(&pong), Ok(Ok(Reply::Pong))));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX/2 elements, backed by three bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
