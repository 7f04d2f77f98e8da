//! Group commit of client writes: small writes that queue up while earlier ones are in flight
//! go to Raft together as one entry — one append, one `fdatasync` on each node and one round
//! of replication for all of them.
//!
//! A write never waits for company: one that finds a free slot and nothing queued goes to
//! Raft at once from its caller's own task (one client sees no added latency and no hop
//! through the proposer task). Only while [`MAX_IN_FLIGHT`] batches are already on their
//! way do newer writes queue, and the next free slot takes everything queued, up to
//! [`MAX_BATCH_OPS`] ops and [`MAX_BATCH_BYTES`] bytes.
//!
//! **Architecture Invariant:** a batch is one log entry, applied op by op in order
//! ([`CommandOp::Batch`]), so every op's outcome is exactly what it would have been as an
//! entry of its own right there; each caller gets its own op's outcome and the entry's index.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use push_protocol::{ErrorBody, ErrorCode};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Route;
use crate::clock::now_ms;
use crate::consensus::Raft;
use crate::model::{Applied, Command, CommandOp};

/// Batches on their way through Raft at once; newer writes queue behind them.
pub const MAX_IN_FLIGHT: usize = 2;
/// Ops in one batch at most.
pub const MAX_BATCH_OPS: usize = 256;
/// Encoded bytes of ops in one batch at most (well under one AppendEntries' budget).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// An op larger than this is proposed on its own.
pub const SOLO_BYTES: usize = 64 << 10;

/// What proposing one op gives its caller.
pub type Answer = Result<Route<(Applied, u64)>, ErrorBody>;

struct Pending {
    op: CommandOp,
    size: usize,
    reply: oneshot::Sender<Answer>,
}

/// The queue in front of the proposer task (which ends when this is dropped).
pub struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
    raft: Raft,
    /// Free places among the [`MAX_IN_FLIGHT`] batches, shared with the proposer task.
    slots: Arc<Semaphore>,
    /// Writes sent to the proposer task and not yet in a batch: while any wait, a new write
    /// queues behind them instead of taking a free slot first.
    waiting: Arc<AtomicUsize>,
}

/// Whether `op` is a small, frequent client write worth grouping. Deploys, placements,
/// heartbeats and audit records are rare and go on their own.
pub fn batchable(op: &CommandOp) -> bool {
    matches!(
        op,
        CommandOp::KvSet { .. }
            | CommandOp::KvDelete { .. }
            | CommandOp::KvCas { .. }
            | CommandOp::QueuePut { .. }
            | CommandOp::QueueTake { .. }
            | CommandOp::QueueAck { .. }
            | CommandOp::TsAppend { .. }
            | CommandOp::TsCursor { .. }
            | CommandOp::Publish { .. }
    )
}

impl Batcher {
    /// Starts the proposer task on the current tokio runtime.
    pub fn start(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(raft.clone(), rx, slots.clone(), waiting.clone()));
        Batcher {
            tx,
            raft,
            slots,
            waiting,
        }
    }

    /// Proposes `op` (of encoded size `size`) in the next batch and waits for its outcome.
    pub async fn propose(&self, op: CommandOp, size: usize) -> Answer {
        // Nothing queued and a slot free: propose right here, a batch of one.
        if self.waiting.load(Ordering::SeqCst) == 0 {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                crate::metrics::metrics().proposal_ops.observe(1.0);
                let answer = write_one(&self.raft, op).await;
                drop(slot);
                return answer;
            }
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            ErrorBody::new(
                ErrorCode::Unavailable,
                "the node is shutting down; retry on another node",
            )
        };
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(Pending { op, size, reply }).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(stopped());
        }
        answer.await.map_err(|_| stopped())?
    }
}

/// Proposes one command and waits until it is committed and applied here.
pub async fn write_one(raft: &Raft, op: CommandOp) -> Answer {
    let command = Command {
        time_ms: now_ms(),
        op,
    };
    match raft.client_write(command).await {
        Ok(resp) => Ok(Route::Done((resp.data, resp.log_id.index))),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Ok(Route::Forward(f.leader_node))
        }
        Err(e) => Err(ErrorBody::new(
            ErrorCode::Unavailable,
            format!("write failed: {e}; retry, and check `push status` if it persists"),
        )),
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
) {
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(p) if bytes + p.size > MAX_BATCH_BYTES => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        waiting.fetch_sub(batch.len(), Ordering::SeqCst);
        let raft = raft.clone();
        tokio::spawn(async move {
            submit(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Proposes `batch` as one entry and hands each caller its own outcome.
async fn submit(raft: &Raft, mut batch: Vec<Pending>) {
    crate::metrics::metrics()
        .proposal_ops
        .observe(batch.len() as f64);
    if batch.len() == 1 {
        let Some(p) = batch.pop() else { return };
        let _ = p.reply.send(write_one(raft, p.op).await);
        return;
    }
    let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.op, p.reply)).unzip();
    let count = ops.len();
    match write_one(raft, CommandOp::Batch(ops)).await {
        Ok(Route::Done((Applied::Batch(outcomes), index))) if outcomes.len() == count => {
            for (reply, applied) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(Route::Done((applied, index))));
            }
        }
        Ok(Route::Done((other, index))) => {
            let body = ErrorBody::new(
                ErrorCode::Internal,
                format!(
                    "a batch of {count} writes at index {index} applied as {other:?}; \
                     this is a bug, please report it"
                ),
            );
            for reply in replies {
                let _ = reply.send(Err(body.clone()));
            }
        }
        Ok(Route::Forward(leader)) => {
            for reply in replies {
                let _ = reply.send(Ok(Route::Forward(leader.clone())));
            }
        }
        Err(body) => {
            for reply in replies {
                let _ = reply.send(Err(body.clone()));
            }
        }
    }
}
