//! Queues (`push.queue`, `push queue`): put and ack are proposed as they are; a take waits on
//! the leader for a ready item and proposes its lease; peek and stats read linearizably.

use std::time::{Duration, Instant};

use push_protocol::{ErrorBody, Outcome, QueueItem, QueueStat, ReadMode, Reply};

use super::leader::{self, Req};
use crate::model::{Applied, CommandOp, State};
use crate::node::{Node, Route};

/// Longest a take may wait for an item.
const MAX_TAKE_WAIT_MS: u64 = 60_000;
/// How often a waiting take looks again when nothing was applied (a lease may have run out).
const RECHECK: Duration = Duration::from_millis(100);

/// `QueuePut`, `QueueAck`.
pub async fn write(req: &Req<'_>) -> Outcome {
    leader::write(req).await
}

/// `QueueTake`: runs on the leader (see [`take_here`]).
pub async fn take(req: &Req<'_>, queue: &str, lease_ms: u64, wait_ms: u64) -> Outcome {
    leader::exclusive(req, || take_here(req.node, queue, lease_ms, wait_ms)).await
}

/// A blocking take on the leader: proposes a lease when the applied state shows a ready
/// item, otherwise sleeps until something is applied (a put wakes it at once) or, at the
/// latest, [`RECHECK`] later. `Forward` if leadership moves meanwhile.
async fn take_here(
    node: &Node,
    queue: &str,
    lease_ms: u64,
    wait_ms: u64,
) -> Result<Route<Reply>, ErrorBody> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_TAKE_WAIT_MS));
    let mut applied = node.state.subscribe();
    loop {
        let ready = node.read(|s| ready_count(s, queue));
        if ready > 0 {
            let command = CommandOp::QueueTake {
                queue: queue.to_string(),
                lease_ms,
            };
            match node.propose(command).await? {
                Route::Done((Applied::Taken { item: Some(item) }, index)) => {
                    return Ok(Route::Done(leader::reply_of(
                        Applied::Taken { item: Some(item) },
                        index,
                    )?))
                }
                Route::Done(_) => {}
                Route::Forward(leader) => return Ok(Route::Forward(leader)),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Route::Done(Reply::Taken(None)));
        }
        let _ = tokio::time::timeout(left.min(RECHECK), applied.changed()).await;
    }
}

/// Items of `queue` ready to be taken now.
fn ready_count(s: &State, queue: &str) -> usize {
    let now = s.queues.clock().max(crate::clock::now_ms());
    s.queues.get(queue).map_or(0, |q| q.ready_count(now))
}

/// `QueuePeek`: the first `n` items, without leasing them.
pub async fn peek(req: &Req<'_>, queue: &str, n: usize) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        let items = s.queues.get(queue).map(|q| q.peek(n)).unwrap_or_default();
        Ok(Reply::Peeked(
            items
                .into_iter()
                .map(|i| QueueItem {
                    id: i.id,
                    value: i.value,
                    deliveries: i.deliveries,
                })
                .collect(),
        ))
    })
    .await
}

/// `QueueStats`: every queue's depth and totals.
pub async fn stats(req: &Req<'_>) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        Ok(Reply::QueueStats(stats_of(s)))
    })
    .await
}

fn stats_of(s: &State) -> Vec<QueueStat> {
    let now = s.queues.clock().max(crate::clock::now_ms());
    s.queues
        .names()
        .map(|(name, q)| QueueStat {
            name: name.clone(),
            ready: q.ready_count(now),
            leased: q.leased_count(now),
            puts: q.puts,
            acks: q.acks,
        })
        .collect()
}
