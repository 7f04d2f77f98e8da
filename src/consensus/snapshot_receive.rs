//! Receiving a snapshot the leader sends in chunks (openraft 0.9's chunked `InstallSnapshot`
//! RPC, which every format speaks): each chunk is appended to the state machine's
//! `snapshot.incoming` file; once the last one is in, the whole is checked (length and
//! CRC-32, for the streamed layout) before openraft is asked to install it. A cut or damaged
//! transfer is refused with the reason in the log and a `SnapshotMismatch` answer, which
//! makes the leader start the transfer over; state bytes of a format newer than this node
//! reads are refused as a failed transfer (sending them again would not help). Nothing of a
//! refused transfer is installed.
//!
//! This replaces openraft's own receiver only to put that check before the install: the
//! state machine treats a failed install as a storage error, which stops the node.

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::{Snapshot, SnapshotSegmentId};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::format::FormatError;
use super::snapshot_file::SnapshotFile;
use super::{Raft, TypeConfig};

/// The transfer under way in this process (a node receives one snapshot at a time).
static RECEIVING: Mutex<Option<Receiving>> = Mutex::const_new(None);

struct Receiving {
    id: String,
    /// Bytes received so far: the offset the next chunk must have.
    next: u64,
    data: Box<SnapshotFile>,
}

type Answer = Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>;

fn mismatch(
    req: &InstallSnapshotRequest<TypeConfig>,
    expect: u64,
) -> RaftError<u64, InstallSnapshotError> {
    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
        expect: SnapshotSegmentId {
            id: req.meta.snapshot_id.clone(),
            offset: expect,
        },
        got: SnapshotSegmentId {
            id: req.meta.snapshot_id.clone(),
            offset: req.offset,
        },
    }))
}

fn storage(e: impl std::fmt::Display) -> RaftError<u64, InstallSnapshotError> {
    tracing::warn!("receiving a snapshot: {e}");
    RaftError::Fatal(Fatal::Stopped)
}

/// Takes one chunk of a snapshot from the leader.
pub async fn receive(raft: &Raft, req: InstallSnapshotRequest<TypeConfig>) -> Answer {
    let mine = raft
        .with_raft_state(|s| *s.vote_ref())
        .await
        .map_err(RaftError::Fatal)?;
    if req.vote < mine {
        // A stale leader: tell it the newer vote.
        return Ok(InstallSnapshotResponse { vote: mine });
    }
    let mut slot = RECEIVING.lock().await;
    if slot.as_ref().map(|r| &r.id) != Some(&req.meta.snapshot_id) {
        if req.offset != 0 {
            return Err(mismatch(&req, 0));
        }
        let data = raft
            .begin_receiving_snapshot()
            .await
            .map_err(|e| RaftError::Fatal(e.into_fatal().unwrap_or(Fatal::Stopped)))?;
        *slot = Some(Receiving {
            id: req.meta.snapshot_id.clone(),
            next: 0,
            data,
        });
    }
    let Some(receiving) = slot.as_mut() else {
        return Err(mismatch(&req, 0));
    };
    if req.offset == 0 && receiving.next != 0 {
        // The leader starts over.
        receiving.data.clear().await.map_err(storage)?;
        receiving.next = 0;
    }
    if req.offset != receiving.next {
        return Err(mismatch(&req, receiving.next));
    }
    receiving.data.write_all(&req.data).await.map_err(storage)?;
    receiving.next += req.data.len() as u64;
    if !req.done {
        return Ok(InstallSnapshotResponse { vote: mine });
    }
    let what = format!(
        "the snapshot {} received from the leader",
        req.meta.snapshot_id
    );
    match receiving.data.check(&what).await {
        Ok(()) => {}
        // Sending it again would not help: refused as a failure of this transfer (the
        // leader retries later), never installed.
        Err(e @ FormatError::Version(_)) => {
            tracing::warn!("refused: {e}");
            *slot = None;
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        Err(e) => {
            tracing::warn!("refused: {e}; the leader will send it again");
            *slot = None;
            return Err(mismatch(&req, 0));
        }
    }
    let Some(receiving) = slot.take() else {
        return Err(mismatch(&req, 0));
    };
    drop(slot);
    let snapshot = Snapshot {
        meta: req.meta.clone(),
        snapshot: receiving.data,
    };
    let done = raft
        .install_full_snapshot(req.vote, snapshot)
        .await
        .map_err(RaftError::Fatal)?;
    Ok(InstallSnapshotResponse { vote: done.vote })
}
