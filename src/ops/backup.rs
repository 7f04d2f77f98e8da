//! `Backup`: streams the replicated state as applied at a committed index, in chunks. The
//! leader confirms its leadership with a quorum first, so the copy holds every write
//! acknowledged before the request arrived; a follower relays the leader's stream.

use std::io;
use std::time::{Duration, Instant};

use push_protocol::{BackupPart, ByteBuf, ErrorBody, ErrorCode, Op, Outcome, Reply};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;

use crate::consensus::backup::{self, BackupState};
use crate::node::peers::ForwardError;
use crate::node::{Node, Route};

/// State bytes per `Chunk` frame (client frames are capped at 16 MiB).
pub const CHUNK: usize = 1 << 20;
/// The first format that knows `Op::Backup`.
const BACKUP_FORMAT: u32 = 3;
/// How long a request waits for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a relayed stream may stall before the follower gives up.
const STALL: Duration = Duration::from_secs(30);
/// Forwarding hops allowed.
const MAX_HOPS: u8 = 3;

/// Answers `Backup` (forwarded `hops` times so far), sending the stream to `progress`; the
/// final reply is the `End` part.
pub async fn backup(node: &Node, hops: u8, progress: &UnboundedSender<Reply>) -> Outcome {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        match node.linearizable().await? {
            Route::Done(()) => return stream_here(node, progress).await,
            Route::Forward(Some(leader)) if leader.addr != node.addr => {
                if hops >= MAX_HOPS {
                    return Err(ErrorBody::new(
                        ErrorCode::NoLeader,
                        "the backup was forwarded too many times while leadership changed; retry",
                    ));
                }
                match relay(node, &leader.addr, hops + 1, progress).await {
                    Err(ForwardError::NotSent(_)) if Instant::now() < deadline => {
                        node.wait_for_leader(Some(leader.addr.as_str())).await;
                    }
                    Err(ForwardError::NotSent(reason)) => {
                        return Err(ErrorBody::new(
                            ErrorCode::NoLeader,
                            format!("the leader at {} cannot be reached ({reason}); retry, or check `push status`", leader.addr),
                        ))
                    }
                    Err(ForwardError::Failed(body)) => return Err(body),
                    Ok(outcome) => return outcome,
                }
            }
            Route::Forward(_) if Instant::now() < deadline => node.wait_for_leader(None).await,
            Route::Forward(_) => {
                return Err(ErrorBody::new(
                    ErrorCode::NoLeader,
                    "no leader within 5 s: a backup needs one to know what is committed; check `push status`",
                ))
            }
        }
    }
}

/// The state as applied here (after leadership was confirmed), encoded and sent in chunks.
async fn stream_here(node: &Node, progress: &UnboundedSender<Reply>) -> Outcome {
    let (index, term, mut state) = {
        let applier = node.state.read();
        let (index, term) = applier
            .last_applied
            .map_or((0, 0), |l| (l.index, l.leader_id.term));
        (index, term, applier.state.clone())
    };
    state.nodes.forget_liveness();
    let store = node.state.blobs().clone();
    let encoded = tokio::task::spawn_blocking(move || {
        // The blob files travel inside the backup's state (a restore moves them back to
        // files), so a backup holds every blob the state lists.
        let listed: Vec<String> = state.code.blob_sizes().map(|(h, _)| h.clone()).collect();
        for hash in listed {
            let bytes = store.read(&hash).map_err(io::Error::other)?;
            state.code.inline_blob(&hash, ByteBuf::from(bytes));
        }
        let bytes = backup::encode(&BackupState { index, term, state })?;
        let sha256 = backup::hex(&Sha256::digest(&bytes));
        Ok::<_, backup::BackupError>((bytes, sha256))
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    let (bytes, sha256) =
        encoded.map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    tracing::info!(index, bytes = bytes.len(), "streaming a backup");
    let gone = || ErrorBody::new(ErrorCode::Unavailable, "the client went away");
    progress
        .send(Reply::Backup(BackupPart::Begin {
            format: push_protocol::FORMAT_VERSION,
            index,
            term,
            bytes: bytes.len() as u64,
        }))
        .map_err(|_| gone())?;
    for chunk in bytes.chunks(CHUNK) {
        progress
            .send(Reply::Backup(BackupPart::Chunk(ByteBuf::from(
                chunk.to_vec(),
            ))))
            .map_err(|_| gone())?;
    }
    Ok(Reply::Backup(BackupPart::End { sha256 }))
}

/// Relays the leader's stream; the last frame is the answer.
async fn relay(
    node: &Node,
    leader: &str,
    hops: u8,
    progress: &UnboundedSender<Reply>,
) -> Result<Outcome, ForwardError> {
    let mut replies = node
        .forward_stream(leader, &Op::Backup, hops, BACKUP_FORMAT)
        .await?;
    let mut last = None;
    loop {
        let next = match tokio::time::timeout(STALL, replies.recv()).await {
            Ok(next) => next,
            Err(_) => {
                return Ok(Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the leader at {leader} stopped sending the backup for {} s; retry",
                        STALL.as_secs()
                    ),
                )))
            }
        };
        let Some(outcome) = next else { break };
        if let Some(Ok(reply)) = last.replace(outcome) {
            if progress.send(reply).is_err() {
                return Ok(Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    "the client went away",
                )));
            }
        }
    }
    Ok(last.unwrap_or_else(|| {
        Err(ErrorBody::new(
            ErrorCode::Unavailable,
            format!("the connection to the leader at {leader} closed during the backup; retry"),
        ))
    }))
}
