//! `Backup`: streams the replicated state as applied at a committed index, in chunks. The
//! leader confirms its leadership with a quorum first, so the copy holds every write
//! acknowledged before the request arrived; a follower relays the leader's stream.

use std::time::{Duration, Instant};

use push_protocol::{BackupPart, ByteBuf, ErrorBody, ErrorCode, Op, Outcome, Reply};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;

use crate::consensus::{backup, blob_section};
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
pub async fn backup(node: &Node, hops: u8, progress: &Sender<Reply>) -> Outcome {
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

/// The state as applied here (after leadership was confirmed), sent in chunks. It is encoded
/// under the state's read lock into an unlinked temporary file (writes wait meanwhile, as
/// while a snapshot is built; the state is never copied in memory), then read back chunk by
/// chunk as fast as the client takes them: `progress` is bounded and its frames wait for the
/// socket, so a slow client costs the node a few chunks of memory, not the whole state.
async fn stream_here(node: &Node, progress: &Sender<Reply>) -> Outcome {
    let shared = node.state.clone();
    let store = node.state.blobs().clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let mut file = tempfile::tempfile()?;
        let applied = shared.read();
        let (index, term) = applied
            .last_applied
            .map_or((0, 0), |l| (l.index, l.leader_id.term));
        let mut sink = backup::StateSink::new(&mut file);
        backup::encode_state_into(index, term, &applied.state, &mut sink)?;
        // The blob files the state lists follow it; they never change, so they are read
        // after the lock is let go.
        let listed = blob_section::listed(&applied.state, &store);
        drop(applied);
        blob_section::write_listed(&mut sink, &listed, &store)?;
        let (bytes, sha256) = sink.finish()?;
        std::io::Seek::rewind(&mut file)?;
        Ok::<_, backup::BackupError>((index, term, file, bytes, sha256))
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    let (index, term, file, bytes, sha256) = encoded.map_err(|e| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("cannot write the backup's state to a temporary file: {e}; check the free space of the temp directory"),
        )
    })?;
    tracing::info!(index, bytes, "streaming a backup");
    let gone = || ErrorBody::new(ErrorCode::Unavailable, "the client went away");
    progress
        .send(Reply::Backup(BackupPart::Begin {
            format: push_protocol::FORMAT_VERSION,
            index,
            term,
            bytes,
        }))
        .await
        .map_err(|_| gone())?;
    let mut file = tokio::fs::File::from_std(file);
    let mut left = bytes;
    while left > 0 {
        let mut chunk = vec![0u8; CHUNK.min(left as usize)];
        file.read_exact(&mut chunk).await.map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("cannot read back the backup's temporary file: {e}"),
            )
        })?;
        left -= chunk.len() as u64;
        progress
            .send(Reply::Backup(BackupPart::Chunk(ByteBuf::from(chunk))))
            .await
            .map_err(|_| gone())?;
    }
    Ok(Reply::Backup(BackupPart::End { sha256 }))
}

/// Relays the leader's stream; the last frame is the answer.
async fn relay(
    node: &Node,
    leader: &str,
    hops: u8,
    progress: &Sender<Reply>,
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
            if progress.send(reply).await.is_err() {
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
