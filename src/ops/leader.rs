//! Running a request where it must run: on the leader. Each request that needs the leader
//! names what the leader does — propose a command, read linearizably, or its own leader-side
//! work (a take, a deploy gate, a join) — and this loop runs it here when this node leads, or
//! forwards the request to the leader, waiting out elections.
//!
//! Only this file forwards. The leader-side work never checks leadership itself: the loop
//! asks the node where the leader is first ([`exclusive`]), or the proposal reports it.

use std::future::Future;
use std::time::{Duration, Instant};

use push_protocol::{ErrorBody, ErrorCode, Op, Outcome, QueueItem, ReadMode, Reply};

use crate::model::{Applied, CommandOp, State};
use crate::node::peers::ForwardError;
use crate::node::{Node, Route};

/// How long a request may wait for a leader before failing with `NoLeader`.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a request waits without a leader before asking whether quorum is lost.
const QUORUM_PROBE_AFTER: Duration = Duration::from_millis(1_000);
/// Forwarding hops allowed (a leader change mid-forward costs one).
const MAX_HOPS: u8 = 3;

/// One request on its way down: the node answering it, the op (forwarded as it is if the
/// leader must answer), and how many forwards it has taken so far.
pub struct Req<'a> {
    pub node: &'a Node,
    pub op: &'a Op,
    pub hops: u8,
}

/// Proposes the command `req.op` asks for (see [`CommandOp::from_op`]) on the leader.
pub async fn write(req: &Req<'_>) -> Outcome {
    let command = CommandOp::from_op(req.op).ok_or_else(|| not_a_change(req.op))?;
    write_command(req, command).await
}

/// Proposes `command` on the leader; `req.op` is what travels if it must be forwarded.
pub async fn write_command(req: &Req<'_>, command: CommandOp) -> Outcome {
    on_leader(req, false, || propose_reply(req.node, command.clone())).await
}

/// Answers `query` from the applied state: here (stale) or on the leader after it confirmed
/// its leadership with a quorum (linearizable).
pub async fn read(req: &Req<'_>, mode: ReadMode, query: impl Fn(&State) -> Outcome) -> Outcome {
    let node = req.node;
    match mode {
        ReadMode::Stale => node.read(&query),
        ReadMode::Linearizable => {
            on_leader(req, false, || async {
                Ok(match node.linearizable().await? {
                    Route::Done(()) => Route::Done(node.read(&query)?),
                    Route::Forward(leader) => Route::Forward(leader),
                })
            })
            .await
        }
    }
}

/// Runs `work` on the leader: here once this node knows it leads, else forwarded. `work`
/// may still answer `Forward` if leadership moves while it runs.
pub async fn exclusive<F, Fut>(req: &Req<'_>, work: F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Route<Reply>, ErrorBody>>,
{
    on_leader(req, true, work).await
}

/// Runs `work` here; when it answers `Forward` (it found it does not lead, as a membership
/// change does), forwards the request there.
pub async fn run<F, Fut>(req: &Req<'_>, work: F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Route<Reply>, ErrorBody>>,
{
    on_leader(req, false, work).await
}

/// Proposes `command` here and turns what it applied into a reply (or where to forward).
pub async fn propose_reply(node: &Node, command: CommandOp) -> Result<Route<Reply>, ErrorBody> {
    Ok(match node.propose(command).await? {
        Route::Done((applied, index)) => Route::Done(reply_of(applied, index)?),
        Route::Forward(leader) => Route::Forward(leader),
    })
}

/// The loop: run `local` here, or forward `req.op` to the leader, waiting out elections.
async fn on_leader<F, Fut>(req: &Req<'_>, check_first: bool, local: F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Route<Reply>, ErrorBody>>,
{
    let node = req.node;
    let started = Instant::now();
    let deadline = started + LEADER_WAIT;
    let mut quorum_checked = false;
    loop {
        // The leader address a forward could not reach this round, if any.
        let mut unreachable = None;
        let route = match check_first.then(|| node.leader_route()) {
            Some(Route::Forward(leader)) => Route::Forward(leader),
            Some(Route::Done(())) | None => local().await?,
        };
        match route {
            Route::Done(reply) => return Ok(reply),
            Route::Forward(Some(leader)) if leader.addr != node.addr => {
                if req.hops >= MAX_HOPS {
                    return Err(ErrorBody::new(
                        ErrorCode::NoLeader,
                        "the request was forwarded too many times while leadership changed; retry",
                    ));
                }
                match node.forward(&leader.addr, req.op, req.hops + 1).await {
                    Ok(reply) => return Ok(reply),
                    Err(ForwardError::NotSent(reason)) if Instant::now() < deadline => {
                        tracing::debug!("forward to {} not sent: {reason}", leader.addr);
                        unreachable = Some(leader.addr);
                    }
                    Err(ForwardError::NotSent(reason)) => {
                        return Err(ErrorBody::new(
                            ErrorCode::NoLeader,
                            format!("the leader at {} cannot be reached ({reason}); retry, or check `push status`", leader.addr),
                        ))
                    }
                    Err(ForwardError::Failed(body)) => return Err(body),
                }
            }
            Route::Forward(_) if Instant::now() < deadline => {}
            Route::Forward(_) => {
                return Err(ErrorBody::new(
                    ErrorCode::NoLeader,
                    format!(
                        "no leader was elected within {}s; a majority of nodes may be down — check `push status`",
                        LEADER_WAIT.as_secs()
                    ),
                ))
            }
        }
        // No leader for a while: if a majority of voters does not answer, none will be
        // elected until they come back, so say so instead of waiting it out.
        if !quorum_checked && started.elapsed() >= QUORUM_PROBE_AFTER {
            quorum_checked = true;
            if let Some(lost) = node.quorum_lost().await {
                return Err(ErrorBody::new(
                    ErrorCode::NoLeader,
                    format!("no leader can be elected: {lost}"),
                ));
            }
        }
        node.wait_for_leader(unreachable.as_deref()).await;
    }
}

/// The error for an op that does not convert into a command (only an audited op whose
/// inner op is not a change can get here).
fn not_a_change(op: &Op) -> ErrorBody {
    let inner = match op {
        Op::Audited { op, .. } => op.as_ref(),
        op => op,
    };
    ErrorBody::new(
        ErrorCode::Invalid,
        format!("only deploys, rollbacks and restarts travel as audited changes, not {inner:?}"),
    )
}

/// The reply to a client for what its command applied.
pub fn reply_of(applied: Applied, index: u64) -> Outcome {
    Ok(match applied {
        Applied::Written | Applied::Nothing => Reply::Written { index },
        Applied::Deleted { existed } => Reply::Deleted { existed, index },
        Applied::Cas { ok, current } => Reply::Cas { ok, current, index },
        Applied::Stored { count } => Reply::Stored { count },
        Applied::Committed(outcome) => Reply::Committed(outcome),
        Applied::Activated { from, to } => Reply::Activated { from, to },
        Applied::Put { ids } => Reply::Put { ids },
        Applied::Taken { item } => Reply::Taken(item.map(|(id, value, deliveries)| QueueItem {
            id,
            value,
            deliveries,
        })),
        Applied::Acked { ok } => Reply::Acked { ok },
        Applied::Restarted { units } => Reply::Restarted { units },
        Applied::Fired { .. } => Reply::Written { index },
        Applied::Appended { seqs } => Reply::Appended { seqs },
        Applied::Users { names } => Reply::Revoked(names),
        Applied::Published { id } => Reply::Published { id, index },
        Applied::Failed(body) => return Err(body),
        // The node splits a batch's outcomes before they reach a request.
        Applied::Batch(_) => {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "a batch outcome reached a single request; this is a bug, please report it",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_outcomes_become_replies() {
        assert!(matches!(
            reply_of(Applied::Written, 7),
            Ok(Reply::Written { index: 7 })
        ));
        assert!(matches!(
            reply_of(Applied::Fired { ok: true }, 3),
            Ok(Reply::Written { index: 3 })
        ));
        let refused = ErrorBody::new(ErrorCode::Invalid, "no");
        assert_eq!(
            reply_of(Applied::Failed(refused.clone()), 1).err(),
            Some(refused)
        );
    }

    #[test]
    fn an_audited_read_is_refused_naming_the_inner_op() {
        let op = Op::Audited {
            note: push_protocol::AuditNote {
                node: 1,
                time_ms: 0,
                who: "x".into(),
                action: "eval".into(),
                app: None,
                detail: String::new(),
            },
            op: Box::new(Op::Ping),
        };
        let e = not_a_change(&op);
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(e.message.ends_with("not Ping"), "{}", e.message);
    }
}
