//! Raft RPCs between nodes: one authenticated TCP connection per (peer, replication stream),
//! carrying `Raft` frames out and `RaftReply` frames back, one RPC at a time.
//!
//! Both directions live here: [`Network`] is openraft's client side and [`serve_rpc`] answers
//! an RPC that arrived on a peer connection.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::snapshot_transport::{Chunked, SnapshotTransport};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use push_protocol::client::{handshake_offering, needs_older_hello};
use push_protocol::format::{self, MIN_FORMAT_VERSION};
use push_protocol::frame::{self, Kind, MAX_PEER_FRAME};
use push_protocol::tls::Stream;
use push_protocol::Role;
use serde::{Deserialize, Serialize};

use super::blobs::{self, BlobStore};
use super::{LogStore, Raft, TypeConfig};
use crate::model::CommandOp;

/// Bytes of entries one AppendEntries carries at most (more entries go in later requests).
pub const APPEND_BUDGET: usize = 2 << 20;

/// A Raft RPC as it travels in a `Raft` frame.
#[derive(Serialize, Deserialize)]
pub enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer, in a `RaftReply` frame.
#[derive(Serialize, Deserialize)]
pub enum RaftRpcReply {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

/// Answers one RPC from a peer. The blob files of entries that carry blobs are written
/// (durably) first, outside openraft's core: its log append then finds them in place, and
/// writing thousands of files inside the core stalled heartbeats into elections.
pub async fn serve_rpc(raft: &Raft, blobs: &BlobStore, rpc: RaftRpc) -> RaftRpcReply {
    match rpc {
        RaftRpc::Append(req) => {
            let ops: Vec<CommandOp> = req
                .entries
                .iter()
                .filter_map(|e| match &e.payload {
                    openraft::EntryPayload::Normal(c) if blobs::carries_blobs(&c.op) => {
                        Some(c.op.clone())
                    }
                    _ => None,
                })
                .collect();
            if !ops.is_empty() {
                let store = blobs.clone();
                let written = tokio::task::spawn_blocking(move || {
                    // A join's small pieces are the state's: the apply joins those.
                    let inline = blobs::Inline::new();
                    ops.iter()
                        .try_for_each(|op| blobs::store_for(&store, op, &inline))
                })
                .await;
                // On failure the log append tries again and reports it.
                let failed = match written {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = failed {
                    tracing::warn!("cannot write the blobs of entries from the leader first: {e}");
                }
            }
            RaftRpcReply::Append(raft.append_entries(req).await)
        }
        RaftRpc::Vote(req) => RaftRpcReply::Vote(raft.vote(req).await),
        RaftRpc::Snapshot(req) => {
            RaftRpcReply::Snapshot(super::snapshot_receive::receive(raft, req).await)
        }
    }
}

/// Creates peer connections for openraft.
pub struct Network {
    pub token: String,
    /// Peer id -> address to dial instead of the one in the membership (`--peer-via`).
    pub peer_via: BTreeMap<u64, String>,
    /// This node's log: the commit index sent to followers is cut to what is on its disk
    /// (the leader's own entries may be committed before they are, see `super::durable`).
    pub log: Option<LogStore>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            target,
            addr: self
                .peer_via
                .get(&target)
                .cloned()
                .unwrap_or_else(|| node.addr.clone()),
            token: self.token.clone(),
            stream: None,
            version: format::highest(),
            log: self.log.clone(),
        }
    }
}

/// A lazily (re)connected link to one peer.
pub struct PeerConnection {
    target: u64,
    addr: String,
    token: String,
    stream: Option<Stream>,
    /// The format of the current connection (the peer's welcome chose it).
    version: u32,
    log: Option<LogStore>,
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot reach node {target} at {addr}: {reason}")]
    Connect {
        target: u64,
        addr: String,
        reason: String,
    },
    #[error("rpc to node {target} at {addr} failed: {reason}")]
    Io {
        target: u64,
        addr: String,
        reason: String,
    },
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl PeerConnection {
    async fn connect(&mut self) -> Result<&mut Stream, LinkError> {
        if self.stream.is_none() {
            let fail = |reason: String| LinkError::Connect {
                target: self.target,
                addr: self.addr.clone(),
                reason,
            };
            let mut offer = format::highest();
            let (stream, welcome) = loop {
                let stream = tokio::time::timeout(
                    Duration::from_secs(1),
                    push_protocol::tls::dial(&self.addr),
                )
                .await
                .map_err(|_| fail("connect timed out".into()))?
                .map_err(|e| fail(e.to_string()))?;
                let shaken = tokio::time::timeout(
                    Duration::from_secs(2),
                    handshake_offering(
                        stream,
                        &self.addr,
                        &self.token,
                        Role::Peer,
                        "push-peer",
                        offer,
                    ),
                )
                .await
                .map_err(|_| fail("handshake timed out".into()))?;
                match shaken {
                    // A node of format 1 wants its own version exactly: ask again for that.
                    Err(e) if offer != MIN_FORMAT_VERSION && needs_older_hello(&e) => {
                        offer = MIN_FORMAT_VERSION;
                    }
                    other => break other.map_err(|e| fail(e.to_string()))?,
                }
            };
            self.version = welcome.protocol;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// One request and its reply. Cancel-safe: openraft drops this future when its own
    /// timeout fires, so the stream is taken out for the exchange and put back only after a
    /// complete reply — a dropped exchange drops (closes) the stream instead of leaving a
    /// stale reply to be read as the answer to the next request.
    async fn round_trip(&mut self, body: &[u8], ttl: Duration) -> Result<Vec<u8>, LinkError> {
        let target = self.target;
        let addr = self.addr.clone();
        let io_fail = |reason: String| LinkError::Io {
            target,
            addr: addr.clone(),
            reason,
        };
        self.connect().await?;
        let Some(mut stream) = self.stream.take() else {
            return Err(io_fail("not connected".into()));
        };
        let version = self.version;
        let exchange = async {
            frame::write_frame(&mut stream, Kind::Raft, body)
                .await
                .map_err(|e| e.to_string())?;
            match frame::read_frame(&mut stream, MAX_PEER_FRAME).await {
                Ok(Some(f)) if f.kind == Kind::RaftReply => Ok(f.payload),
                Ok(Some(f)) if f.kind == Kind::Error => Err(format::decode::<
                    push_protocol::ErrorBody,
                >(version, &f.payload)
                .map(|b| b.message)
                .unwrap_or_else(|e| e.to_string())),
                Ok(Some(f)) => Err(format!("unexpected {:?} frame", f.kind)),
                Ok(None) => Err("peer closed the connection".to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        let result = tokio::time::timeout(ttl, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {ttl:?}")));
        if result.is_ok() {
            self.stream = Some(stream);
        }
        result.map_err(io_fail)
    }

    async fn call<T, E>(
        &mut self,
        rpc: &RaftRpc,
        ttl: Duration,
        unpack: impl FnOnce(RaftRpcReply) -> Option<Result<T, RaftError<u64, E>>>,
    ) -> RpcResult<T, E>
    where
        E: std::error::Error,
    {
        // Connect first: the peer's welcome decides the format of the request.
        self.connect()
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let version = self.version;
        let body =
            format::encode(version, rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // Several entries over the budget: ask openraft for fewer, so each AppendEntries can
        // answer within its timeout (one heartbeat) even when the entries are large blobs.
        if let RaftRpc::Append(req) = rpc {
            let entries = req.entries.len() as u64;
            if entries > 1 && body.len() > APPEND_BUDGET {
                let fit = entries * APPEND_BUDGET as u64 / body.len() as u64;
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(fit.clamp(1, entries - 1)),
                ));
            }
        }
        if body.len() + 1 > MAX_PEER_FRAME {
            let entries = match rpc {
                RaftRpc::Append(req) => req.entries.len() as u64,
                _ => 1,
            };
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2).max(1)),
            ));
        }
        let reply = self.round_trip(&body, ttl).await.map_err(|e| match e {
            LinkError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            LinkError::Io { .. } => RPCError::Network(NetworkError::new(&e)),
        })?;
        let reply: RaftRpcReply = format::decode(version, &reply)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        match unpack(reply) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            None => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other("peer answered a different rpc"),
            ))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        if let Some(log) = &self.log {
            // No follower applies an entry before it is on a durable majority.
            rpc.leader_commit = log.commit_on_disk(rpc.leader_commit);
        }
        self.call(&RaftRpc::Append(rpc), option.hard_ttl(), |r| match r {
            RaftRpcReply::Append(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let ttl = option.hard_ttl().max(Duration::from_secs(10));
        self.call(&RaftRpc::Snapshot(rpc), ttl, |r| match r {
            RaftRpcReply::Snapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    /// A peer of an older format gets the snapshot re-encoded in its format; any other peer
    /// the snapshot file's state bytes as they are. Both go by openraft's chunked transfer.
    async fn full_snapshot(
        &mut self,
        vote: openraft::Vote<u64>,
        snapshot: openraft::Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let older = self.connect().await.is_ok() && self.version < format::highest();
        let snapshot = if older {
            super::snapshot_send::for_format(snapshot, self.version)
                .await
                .map_err(|e| {
                    StreamingError::StorageError(openraft::StorageError::IO {
                        source: openraft::StorageIOError::new(
                            openraft::ErrorSubject::Snapshot(None),
                            openraft::ErrorVerb::Read,
                            openraft::AnyError::error(e.to_string()),
                        ),
                    })
                })?
        } else {
            snapshot
        };
        Chunked::send_snapshot(self, vote, snapshot, cancel, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        self.call(&RaftRpc::Vote(rpc), option.hard_ttl(), |r| match r {
            RaftRpcReply::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! Bounded fuzzing of the peer decoders: whatever bytes arrive in a `Raft` or `RaftReply`
    //! frame, decoding gives a typed error or a message — never a panic.

    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use proptest::prelude::*;
    use push_protocol::{codec, Value};

    use super::*;
    use crate::model::{Command, CommandOp};

    fn samples() -> Vec<Vec<u8>> {
        let log_id = |i| LogId::new(CommittedLeaderId::new(3, 1), i);
        let entries = (1..=3)
            .map(|i| Entry::<TypeConfig> {
                log_id: log_id(i),
                payload: EntryPayload::Normal(Command {
                    time_ms: 1_700_000_000_000 + i,
                    op: CommandOp::KvSet {
                        map: "m".into(),
                        key: format!("k{i}"),
                        value: Value::List(vec![Value::Int(i as i64), Value::Str("v".into())]),
                    },
                }),
            })
            .collect();
        let append = RaftRpc::Append(AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(0)),
            leader_commit: Some(log_id(2)),
            entries,
        });
        let vote = RaftRpc::Vote(VoteRequest::new(Vote::new(4, 2), Some(log_id(3))));
        let reply = RaftRpcReply::Append(Ok(AppendEntriesResponse::Success));
        vec![
            codec::encode(&append).expect("encode"),
            codec::encode(&vote).expect("encode"),
            codec::encode(&reply).expect("encode"),
        ]
    }

    #[test]
    fn valid_rpcs_round_trip() {
        let s = samples();
        assert!(
            matches!(codec::decode::<RaftRpc>(&s[0]), Ok(RaftRpc::Append(r)) if r.entries.len() == 3)
        );
        assert!(matches!(
            codec::decode::<RaftRpc>(&s[1]),
            Ok(RaftRpc::Vote(_))
        ));
        assert!(matches!(
            codec::decode::<RaftRpcReply>(&s[2]),
            Ok(RaftRpcReply::Append(Ok(_)))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = codec::decode::<RaftRpc>(&bytes);
            let _ = codec::decode::<RaftRpcReply>(&bytes);
        }

        #[test]
        fn mutated_rpcs_never_panic(
            which in 0usize..3,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..6),
        ) {
            let mut bytes = samples()[which].clone();
            for (at, byte, how) in edits {
                let len = bytes.len().max(1);
                match how {
                    0 => if let Some(b) = bytes.get_mut(at % len) { *b = byte },
                    1 => bytes.insert(at % (bytes.len() + 1), byte),
                    2 => bytes.truncate(at % len),
                    _ => {
                        // A varint claiming a huge length.
                        let at = at % len;
                        let mut huge = vec![253u8];
                        huge.extend_from_slice(&(u64::MAX / 5).to_le_bytes());
                        let end = (at + huge.len()).min(bytes.len());
                        bytes.splice(at..end, huge);
                    }
                }
            }
            let _ = codec::decode::<RaftRpc>(&bytes);
            let _ = codec::decode::<RaftRpcReply>(&bytes);
        }
    }
}
