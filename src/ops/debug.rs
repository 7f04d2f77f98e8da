//! Post-mortem of live failures and call tracing (`Op::Debug`): `push errors` asks every
//! member for its kept failures; a question about one failure goes to the node its id
//! names; a trace runs on this node's workers (and, for `--all`, on every member).

use std::time::Duration;

use push_protocol::{
    DebugAction, DebugReply, ErrorBody, ErrorCode, FailureView, Op, Outcome, Reply, Stream,
};
use tokio::sync::mpsc;

use super::fanout::fan_out;
use crate::node::Node;
use crate::workers::debug::{DebugError, FailureId};

/// How long listing failures waits for each member.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a question about one failure may take on another node (a replay runs a handler).
const ASK_TIMEOUT: Duration = Duration::from_secs(90);
/// The longest a trace may run, and the most events it may print.
pub const MAX_TRACE_SECS: u32 = 600;
pub const MAX_TRACE_EVENTS: u32 = 10_000;

fn error(e: DebugError) -> ErrorBody {
    let code = match &e {
        DebugError::NotFound(_) => ErrorCode::NotFound,
        DebugError::Forbidden(_) => ErrorCode::Forbidden,
        DebugError::Invalid(_) => ErrorCode::Invalid,
        DebugError::Worker(_) => ErrorCode::Internal,
    };
    ErrorBody::new(code, e.to_string())
}

fn answer<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ErrorBody> {
    serde_json::from_value(value).map_err(|e| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("undecodable post-mortem answer: {e}"),
        )
    })
}

/// Answers one `Op::Debug`; an evaluation's prints and a trace's events go to `progress`.
pub async fn debug(
    node: &Node,
    action: &DebugAction,
    here: bool,
    scope: &[String],
    progress: &mpsc::Sender<Reply>,
) -> Outcome {
    let id = match action {
        DebugAction::Errors => return errors(node, here, scope).await,
        DebugAction::Trace { target, max, secs } => {
            return trace(node, target, *max, *secs, here, scope, progress).await
        }
        DebugAction::Untrace => return untrace(node, here, scope).await,
        DebugAction::Open { id }
        | DebugAction::Locals { id, .. }
        | DebugAction::Eval { id, .. }
        | DebugAction::Source { id, .. }
        | DebugAction::Replay { id } => FailureId::parse(id).map_err(error)?,
    };
    if id.node != node.id {
        if !node.members().iter().any(|m| m.id == id.node) {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("failure {id} was kept on node {}, which is not a member of this cluster now; `push errors` lists the kept ones", id.node),
            ));
        }
        let op = Op::Debug {
            action: action.clone(),
            here: true,
            scope: scope.to_vec(),
        };
        return node.ask(id.node, op, ASK_TIMEOUT).await;
    }
    let pool = &node.workers;
    let reply = match action {
        DebugAction::Open { .. } => {
            let mut value = pool
                .failure_request(&id, "open", None, scope)
                .await
                .map_err(error)?;
            if let Some(row) = value.get_mut("row") {
                let named = serde_json::json!({
                    "id": id.to_string(), "node": id.node, "worker": id.worker,
                    "app": row["app"], "version": row["version"], "origin": row["origin"],
                    "at_ms": row["at_ms"], "error": row["error"], "place": row["place"],
                });
                *row = named;
            }
            DebugReply::Opened(Box::new(answer::<FailureView>(value)?))
        }
        DebugAction::Locals { frame, .. } => {
            let value = pool
                .failure_request(&id, "locals", Some(*frame), scope)
                .await
                .map_err(error)?;
            DebugReply::Locals(answer(value)?)
        }
        DebugAction::Source { frame, .. } => {
            let value = pool
                .failure_request(&id, "source", Some(*frame), scope)
                .await
                .map_err(error)?;
            #[derive(serde::Deserialize)]
            struct Source {
                file: String,
                line: u32,
                text: String,
            }
            let s: Source = answer(value)?;
            DebugReply::Source {
                file: s.file,
                line: s.line,
                text: s.text,
            }
        }
        DebugAction::Replay { .. } => {
            let value = pool
                .failure_request(&id, "replay", None, scope)
                .await
                .map_err(error)?;
            #[derive(serde::Deserialize)]
            struct Replayed {
                ok: bool,
                summary: String,
                failure: Option<u64>,
            }
            let r: Replayed = answer(value)?;
            DebugReply::Replayed {
                ok: r.ok,
                summary: r.summary,
                failure: r.failure.map(|seq| FailureId { seq, ..id }.to_string()),
            }
        }
        DebugAction::Eval { frame, code, .. } => {
            let (out, mut printed) = mpsc::unbounded_channel::<(Stream, String)>();
            let forward = async {
                while let Some((stream, text)) = printed.recv().await {
                    let _ = progress.send(Reply::Output { stream, text }).await;
                }
            };
            let run = async {
                let result = pool
                    .eval_in_frame(&id, *frame, code.clone(), scope.to_vec(), &out)
                    .await;
                drop(out);
                result
            };
            let (result, ()) = tokio::join!(run, forward);
            DebugReply::Evaluated(Box::new(result.map_err(error)?))
        }
        DebugAction::Errors | DebugAction::Trace { .. } | DebugAction::Untrace => {
            unreachable!("answered above")
        }
    };
    Ok(Reply::Debug(reply))
}

/// Kept failures, newest first: this node's (`here`) or every member's.
async fn errors(node: &Node, here: bool, scope: &[String]) -> Outcome {
    if here {
        let rows = node.workers.failures(node.id, scope).await;
        return Ok(Reply::Debug(DebugReply::Errors {
            rows,
            missing: vec![],
        }));
    }
    let targets: Vec<u64> = node.members().iter().map(|m| m.id).collect();
    let op = Op::Debug {
        action: DebugAction::Errors,
        here: true,
        scope: scope.to_vec(),
    };
    let answers = fan_out(node, &targets, op, LIST_TIMEOUT, || async {
        let rows = node.workers.failures(node.id, scope).await;
        Ok(Reply::Debug(DebugReply::Errors {
            rows,
            missing: vec![],
        }))
    })
    .await;
    let (mut rows, mut missing) = (Vec::new(), Vec::new());
    for (id, outcome) in answers {
        match outcome {
            Ok(Reply::Debug(DebugReply::Errors { rows: more, .. })) => rows.extend(more),
            Ok(other) => missing.push((id, format!("unexpected reply {other:?}"))),
            Err(e) => missing.push((id, e.message)),
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
    Ok(Reply::Debug(DebugReply::Errors { rows, missing }))
}

/// Traces calls of `target` on this node's workers, and with `here` unset on every member
/// (their events arrive when their trace ends).
async fn trace(
    node: &Node,
    target: &str,
    max: u32,
    secs: u32,
    here: bool,
    scope: &[String],
    progress: &mpsc::Sender<Reply>,
) -> Outcome {
    if max == 0 || secs == 0 || max > MAX_TRACE_EVENTS || secs > MAX_TRACE_SECS {
        return Err(ErrorBody::new(
            ErrorCode::Invalid,
            format!("a trace takes --max 1 to {MAX_TRACE_EVENTS} events and --secs 1 to {MAX_TRACE_SECS} seconds (defaults 100 and 60)"),
        ));
    }
    let local = async {
        let (out, mut events) = mpsc::unbounded_channel::<(Stream, String)>();
        let mut lines = Vec::new();
        let forward = async {
            while let Some((_, text)) = events.recv().await {
                let _ = progress
                    .send(Reply::Output {
                        stream: Stream::Stdout,
                        text: text.clone(),
                    })
                    .await;
                lines.push(text);
            }
        };
        let run = async {
            let result = node
                .workers
                .trace(node.id, target, max, secs, scope, &out)
                .await;
            drop(out);
            result
        };
        let (result, ()) = tokio::join!(run, forward);
        result.map(|(events, why)| (events, why, lines))
    };
    if here {
        let (events, why, lines) = local.await.map_err(error)?;
        return Ok(Reply::Debug(DebugReply::Traced { events, why, lines }));
    }
    let others: Vec<u64> = node
        .members()
        .iter()
        .map(|m| m.id)
        .filter(|id| *id != node.id)
        .collect();
    let op = Op::Debug {
        action: DebugAction::Trace {
            target: target.to_string(),
            max,
            secs,
        },
        here: true,
        scope: scope.to_vec(),
    };
    let limit = Duration::from_secs(u64::from(secs) + 10);
    let remote = fan_out(node, &others, op, limit, || async {
        Err(ErrorBody::new(ErrorCode::Internal, "not asked"))
    });
    let (mine, theirs) = tokio::join!(local, remote);
    let (mut events, why, _) = mine.map_err(error)?;
    for (id, outcome) in theirs {
        match outcome {
            Ok(Reply::Debug(DebugReply::Traced {
                events: n, lines, ..
            })) => {
                events += n;
                for text in lines {
                    let _ = progress
                        .send(Reply::Output {
                            stream: Stream::Stdout,
                            text,
                        })
                        .await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = progress
                    .send(Reply::Output {
                        stream: Stream::Stderr,
                        text: format!("node {id}: trace not run: {}\n", e.message),
                    })
                    .await;
            }
        }
    }
    Ok(Reply::Debug(DebugReply::Traced {
        events,
        why,
        lines: vec![],
    }))
}

/// Stops the traces running on this node (`here`) or on every member.
async fn untrace(node: &Node, here: bool, scope: &[String]) -> Outcome {
    if here {
        let stopped = node.workers.untrace().await;
        return Ok(Reply::Debug(DebugReply::Untraced { stopped }));
    }
    let targets: Vec<u64> = node.members().iter().map(|m| m.id).collect();
    let op = Op::Debug {
        action: DebugAction::Untrace,
        here: true,
        scope: scope.to_vec(),
    };
    let answers = fan_out(node, &targets, op, LIST_TIMEOUT, || async {
        Ok(Reply::Debug(DebugReply::Untraced {
            stopped: node.workers.untrace().await,
        }))
    })
    .await;
    let stopped = answers
        .into_iter()
        .filter_map(|(_, o)| match o {
            Ok(Reply::Debug(DebugReply::Untraced { stopped })) => Some(stopped),
            _ => None,
        })
        .sum();
    Ok(Reply::Debug(DebugReply::Untraced { stopped }))
}
