//! The cluster itself: membership changes (`Join`, `JoinLearner`, `Promote`, `Remove`), the
//! node registry (`push registry`), the structured logs of every member (`push logs`) and
//! the audit log (`push audit`).

use std::time::Duration;

use push_protocol::{ErrorBody, ErrorCode, NodeEntry, Op, Outcome, ReadMode, Reply};

use super::fanout::fan_out;
use super::leader::{self, Req};
use crate::node::{Node, Route};

/// How long `Logs` waits for each node's records.
const LOGS_TIMEOUT: Duration = Duration::from_secs(2);

/// `Join`: adds node `id` at `addr` (on the leader).
pub async fn join(req: &Req<'_>, id: u64, addr: &str) -> Outcome {
    let node = req.node;
    leader::run(req, || async {
        Ok(match node.join(id, addr).await? {
            Route::Done(members) => Route::Done(Reply::Joined { members }),
            Route::Forward(l) => Route::Forward(l),
        })
    })
    .await
}

/// `JoinLearner`: adds node `id` at `addr` as a non-voting member (on the leader).
pub async fn join_learner(req: &Req<'_>, id: u64, addr: &str) -> Outcome {
    let node = req.node;
    leader::run(req, || async {
        members_reply(node.join_learner(id, addr).await?)
    })
    .await
}

/// `Promote`: makes learner `id` a voter (on the leader).
pub async fn promote(req: &Req<'_>, id: u64) -> Outcome {
    let node = req.node;
    leader::exclusive(req, || async { members_reply(node.promote(id).await?) }).await
}

/// `Remove`: takes node `id` out of the members (on the leader, which first checks that
/// the voters left keep a live majority).
pub async fn remove(req: &Req<'_>, id: u64) -> Outcome {
    let node = req.node;
    leader::exclusive(req, || async { members_reply(node.remove(id).await?) }).await
}

fn members_reply(route: Route<Vec<push_protocol::Member>>) -> Result<Route<Reply>, ErrorBody> {
    Ok(match route {
        Route::Done(members) => Route::Done(Reply::Joined { members }),
        Route::Forward(l) => Route::Forward(l),
    })
}

/// `Nodes`: the registry as this node has applied it, with liveness judged now.
pub fn nodes(node: &Node) -> Reply {
    let now = crate::clock::now_ms();
    node.read(|s| {
        Reply::Nodes(
            s.nodes
                .all()
                .map(|r| NodeEntry {
                    info: r.info.clone(),
                    alive: r.alive(now),
                    last_seen_ms: r.last_seen_ms,
                })
                .collect(),
        )
    })
}

/// `Audit`: entries after `after`, at most `limit`, of one action if given.
pub async fn audit(req: &Req<'_>, after: u64, limit: usize, action: Option<&str>) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        let limit = limit.min(crate::model::audit::MAX_ENTRIES);
        Ok(Reply::Audit(s.audit.query(after, limit, action)))
    })
    .await
}

/// Structured log records from this node's ring, or gathered from every member.
pub async fn logs(
    node: &Node,
    after: &[(u64, u64)],
    daemon: Option<&str>,
    level: Option<&str>,
    here: bool,
) -> Outcome {
    let level = match level {
        None => None,
        Some(text) => Some(crate::logs::parse_level(text).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::Invalid,
                format!("unknown level {text:?}; use error, warn, info, debug or trace"),
            )
        })?),
    };
    let filter = crate::logs::Filter {
        daemon: daemon.map(String::from),
        level,
    };
    let since = |id: u64| after.iter().find(|(n, _)| *n == id).map_or(0, |(_, s)| *s);
    let local = || async {
        let mut records =
            crate::logs::ring().after(since(node.id), &filter, crate::logs::MAX_PER_ANSWER);
        for r in &mut records {
            r.node = node.id;
        }
        Ok(Reply::Logs(records))
    };
    if here {
        return local().await;
    }
    let targets: Vec<u64> = node.members().iter().map(|m| m.id).collect();
    let op = Op::Logs {
        after: after.to_vec(),
        daemon: daemon.map(String::from),
        level: level.map(|l| l.to_string()),
        here: true,
    };
    let mut records = Vec::new();
    for (_, outcome) in fan_out(node, &targets, op, LOGS_TIMEOUT, local).await {
        if let Ok(Reply::Logs(mut r)) = outcome {
            records.append(&mut r);
        }
    }
    records.sort_by_key(|r| (r.time_ms, r.node, r.seq));
    Ok(Reply::Logs(records))
}
