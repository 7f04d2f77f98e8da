//! Request dispatch: each [`Op`] becomes a local read, a linearizable read, or a write
//! proposed through Raft; leader-only work is routed by [`Node::on_leader`].

use std::collections::BTreeMap;

use push_protocol::{
    AuditNote, ByteBuf, Client, DaemonRow, ErrorBody, ErrorCode, LogLine, NodeEntry, NodeInfo, Op,
    Outcome, QueueItem, QueueStat, ReadMode, Reply, RunFunc, RunOn, Stream, Value,
};
use tokio::sync::mpsc;

use crate::runtime::RuntimeError;

use crate::model::code_store::tree_hash;

use crate::model::{Applied, CommandOp, State};
use crate::node::{Node, Route};

/// Most bytes one `PutBlobs` may carry; the CLI batches below this.
pub const MAX_BLOB_BATCH: usize = 4 << 20;

/// Answers one request, sending intermediate replies (an eval's output) to `progress`.
///
/// `who` is the client as it named itself, for the audit log; None for the cluster's own
/// requests between nodes.
pub async fn handle_streaming(
    node: &Node,
    op: Op,
    progress: &mpsc::UnboundedSender<Reply>,
    who: Option<&str>,
) -> Outcome {
    let op = match who {
        Some(who) => crate::server::audit::wrap(node, op, who),
        None => op,
    };
    match op {
        Op::Eval {
            session,
            code,
            module,
        } => eval(node, session, code, module, progress).await,
        op => handle(node, op).await,
    }
}

/// Most bytes one `Output` frame carries; smaller prints are merged up to this.
const OUTPUT_CHUNK: usize = 64 << 10;

fn runtime_error(e: RuntimeError) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("python runtime: {e}"))
}

/// Runs an evaluation on this node, streaming its output, and returns its result.
async fn eval(
    node: &Node,
    session: Option<u64>,
    code: String,
    module: Option<String>,
    progress: &mpsc::UnboundedSender<Reply>,
) -> Outcome {
    let started = std::time::Instant::now();
    let (mut output, mut done) = node.runtime.eval(session, code, module, node.id);
    let forward = |first: (Stream, String),
                   output: &mut mpsc::UnboundedReceiver<(Stream, String)>| {
        let (stream, mut text) = first;
        while text.len() < OUTPUT_CHUNK {
            match output.try_recv() {
                Ok((s, more)) if s == stream => text.push_str(&more),
                Ok(other) => {
                    let _ = progress.send(Reply::Output {
                        stream,
                        text: std::mem::take(&mut text),
                    });
                    let (s, t) = other;
                    let _ = progress.send(Reply::Output { stream: s, text: t });
                    return;
                }
                Err(_) => break,
            }
        }
        let _ = progress.send(Reply::Output { stream, text });
    };
    let result = loop {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Some(chunk) => forward(chunk, &mut output),
                None => break (&mut done).await,
            },
            result = &mut done => break result,
        }
    };
    while let Ok(chunk) = output.try_recv() {
        forward(chunk, &mut output);
    }
    let failed = !matches!(&result, Ok(Ok(r)) if r.error.is_none());
    crate::metrics::metrics().eval(started.elapsed(), failed);
    match result {
        Ok(Ok(r)) => Ok(Reply::Evaluated(Box::new(r))),
        Ok(Err(e)) => Err(runtime_error(e)),
        Err(_) => Err(ErrorBody::new(
            ErrorCode::Internal,
            "the evaluation thread stopped without an answer",
        )),
    }
}

/// Longest a take may wait for an item.
const MAX_TAKE_WAIT_MS: u64 = 60_000;

/// A blocking take on the leader: proposes a lease when the applied state shows a ready
/// item, otherwise sleeps until something is applied (a put wakes it at once) or, at the
/// latest, 100 ms later (a lease may have run out meanwhile).
async fn take(
    node: &Node,
    queue: &str,
    lease_ms: u64,
    wait_ms: u64,
) -> Result<Route<Reply>, ErrorBody> {
    if let Route::Forward(leader) = node.leader_route() {
        return Ok(Route::Forward(leader));
    }
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(wait_ms.min(MAX_TAKE_WAIT_MS));
    let mut applied = node.state.subscribe();
    loop {
        let ready = node.read(|s| {
            let now = s.queues.clock().max(crate::node::now_ms());
            s.queues.get(queue).map_or(0, |q| q.ready_count(now))
        });
        if ready > 0 {
            let command = CommandOp::QueueTake {
                queue: queue.to_string(),
                lease_ms,
            };
            match node.propose(command).await? {
                Route::Done((Applied::Taken { item: Some(item) }, index)) => {
                    return Ok(Route::Done(reply_of(
                        Applied::Taken { item: Some(item) },
                        index,
                    )?))
                }
                Route::Done(_) => {}
                Route::Forward(leader) => return Ok(Route::Forward(leader)),
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(Route::Done(Reply::Taken(None)));
        }
        let _ = tokio::time::timeout(
            left.min(std::time::Duration::from_millis(100)),
            applied.changed(),
        )
        .await;
    }
}

/// Sends `op` to the node at `addr` over a fresh client connection, within `limit`.
async fn ask_member(addr: &str, token: &str, op: Op, limit: std::time::Duration) -> Outcome {
    let ask = async {
        let client = Client::connect_as(addr, token, crate::NODE_CLIENT)
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, format!("{addr}: {e}")))?;
        client.call(op).await.map_err(|e| match e {
            push_protocol::ClientError::Server(body) => body,
            e => ErrorBody::new(ErrorCode::Unavailable, format!("{addr}: {e}")),
        })
    };
    tokio::time::timeout(limit, ask).await.unwrap_or_else(|_| {
        Err(ErrorBody::new(
            ErrorCode::Unavailable,
            format!("{addr}: no answer within {}s", limit.as_secs()),
        ))
    })
}

/// Asks each of `targets` (node ids) `op` — this node directly through `local` — and
/// collects the answers by node id.
async fn fan_out<F, Fut>(
    node: &Node,
    targets: &[u64],
    op: Op,
    limit: std::time::Duration,
    local: F,
) -> Vec<(u64, Outcome)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let members = node.members();
    let mut tasks = tokio::task::JoinSet::new();
    for id in targets.iter().copied().filter(|id| *id != node.id) {
        let addr = members
            .iter()
            .find(|m| m.id == id)
            .map(|m| node.dial_addr(m.id, &m.addr));
        let (op, token) = (op.clone(), node.token.clone());
        tasks.spawn(async move {
            let outcome = match addr {
                Some(addr) => ask_member(&addr, &token, op, limit).await,
                None => Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("node {id} is not a member"),
                )),
            };
            (id, outcome)
        });
    }
    let mut results = Vec::new();
    if targets.contains(&node.id) {
        results.push((node.id, local().await));
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(pair) = joined {
            results.push(pair);
        }
    }
    results.sort_by_key(|(id, _)| *id);
    results
}

/// Evaluates `code` on every member, each in a throwaway namespace.
async fn eval_all(node: &Node, code: String) -> Outcome {
    let targets: Vec<u64> = node.members().iter().map(|m| m.id).collect();
    let op = Op::Eval {
        session: None,
        code: code.clone(),
        module: None,
    };
    let (sink, _) = mpsc::unbounded_channel();
    let results = fan_out(node, &targets, op, EVAL_ALL_TIMEOUT, || {
        eval(node, None, code, None, &sink)
    })
    .await;
    Ok(Reply::EvaluatedAll(
        results
            .into_iter()
            .map(|(id, outcome)| {
                let result = match outcome {
                    Ok(Reply::Evaluated(r)) => Ok(*r),
                    Ok(other) => Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!("unexpected reply {other:?}"),
                    )),
                    Err(e) => Err(e),
                };
                (id, result)
            })
            .collect(),
    ))
}

/// Runs a lambda where `on` says; results per node.
async fn run_lambda(node: &Node, func: &RunFunc, args: &[Value], on: &RunOn) -> Outcome {
    let live: Vec<NodeInfo> = crate::tasks::live_nodes(node);
    let targets: Vec<u64> = match on {
        RunOn::Here => vec![node.id],
        RunOn::Node(id) => vec![*id],
        RunOn::All => live.iter().map(|n| n.id).collect(),
        RunOn::Tag(tag) => live
            .iter()
            .filter(|n| n.tags.contains(tag))
            .map(|n| n.id)
            .collect(),
        RunOn::Any => {
            if live.is_empty() {
                vec![node.id]
            } else {
                vec![live[rand::random::<usize>() % live.len()].id]
            }
        }
    };
    if targets.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("no live node matches {on:?}; see `push registry` for ids and tags"),
        ));
    }
    let op = Op::Run {
        func: func.clone(),
        args: args.to_vec(),
        on: RunOn::Here,
    };
    let local = || async {
        let result = node
            .runtime
            .run_lambda(func.clone(), args.to_vec())
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Invalid, e));
        Ok(Reply::Ran(vec![(node.id, result)]))
    };
    let results = fan_out(node, &targets, op, RUN_TIMEOUT, local).await;
    let mut out = Vec::new();
    for (id, outcome) in results {
        match outcome {
            Ok(Reply::Ran(mut r)) if r.len() == 1 => out.push(r.remove(0)),
            Ok(other) => out.push((
                id,
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    format!("unexpected reply {other:?}"),
                )),
            )),
            Err(e) => out.push((id, Err(e))),
        }
    }
    Ok(Reply::Ran(out))
}

/// The rows of `push daemons`, from the placement and the nodes' reports.
fn daemon_rows(s: &State) -> Vec<DaemonRow> {
    let mut rows = Vec::new();
    for (app, tasks) in s.tasks.apps() {
        for (unit, placement) in &tasks.units {
            if placement.nodes.is_empty() {
                rows.push(DaemonRow {
                    app: app.clone(),
                    unit: unit.clone(),
                    kind: kind_of(unit),
                    node: None,
                    state: "unplaced: no live node matches".into(),
                    restarts: 0,
                    runs: 0,
                    version: None,
                    error: None,
                });
            }
            for id in &placement.nodes {
                let report = s.nodes.unit(*id, app, unit);
                rows.push(DaemonRow {
                    app: app.clone(),
                    unit: unit.clone(),
                    kind: report.map_or_else(|| kind_of(unit), |r| r.kind.clone()),
                    node: Some(*id),
                    state: report.map_or_else(|| "starting".into(), |r| r.state.clone()),
                    restarts: report.map_or(0, |r| r.restarts),
                    runs: report.map_or(0, |r| r.runs),
                    version: report.map(|r| r.version),
                    error: report.and_then(|r| r.error.clone()),
                });
            }
        }
        for name in &tasks.schedules {
            let firing = s.tasks.firing(app, name);
            let nodes = firing.map(|f| f.nodes.clone()).unwrap_or_default();
            if nodes.is_empty() {
                rows.push(DaemonRow {
                    app: app.clone(),
                    unit: name.clone(),
                    kind: "schedule".into(),
                    node: None,
                    state: "waiting for its first firing".into(),
                    restarts: 0,
                    runs: 0,
                    version: None,
                    error: None,
                });
            }
            for id in nodes {
                let report = s.nodes.unit(id, app, name);
                rows.push(DaemonRow {
                    app: app.clone(),
                    unit: name.clone(),
                    kind: "schedule".into(),
                    node: Some(id),
                    state: report.map_or_else(|| "fired".into(), |r| r.state.clone()),
                    restarts: 0,
                    runs: report.map_or(0, |r| r.runs),
                    version: report.map(|r| r.version),
                    error: report.and_then(|r| r.error.clone()),
                });
            }
        }
    }
    rows
}

fn kind_of(unit: &str) -> String {
    if unit.ends_with(']') {
        "partition"
    } else {
        "daemon"
    }
    .into()
}

/// Log lines of daemon `name`: from this node, or gathered from every node that runs it.
async fn tail(
    node: &Node,
    app: Option<&str>,
    name: &str,
    after: &[(u64, u64)],
    here: bool,
) -> Outcome {
    let has = |s: &State, app: &str| {
        s.tasks.app(app).is_some_and(|t| {
            t.schedules.iter().any(|n| n == name)
                || t.units
                    .keys()
                    .any(|u| u == name || crate::model::tasks::is_partition_of(u, name))
        })
    };
    // Without an app: the default app if it has `name`, else the first app that does.
    let app = match app {
        Some(a) => a.to_string(),
        None => node.read(|s| {
            let default = crate::cli::code::DEFAULT_APP;
            if has(s, default) {
                default.to_string()
            } else {
                s.tasks
                    .apps()
                    .map(|(a, _)| a.clone())
                    .find(|a| has(s, a))
                    .unwrap_or_else(|| default.to_string())
            }
        }),
    };
    let since = |id: u64| after.iter().find(|(n, _)| *n == id).map_or(0, |(_, s)| *s);
    let local = || async {
        node.runtime
            .lines(app.clone(), name.to_string(), since(node.id))
            .await
            .map(|lines| {
                Reply::Lines(
                    lines
                        .into_iter()
                        .map(|(seq, text)| LogLine {
                            node: node.id,
                            seq,
                            text,
                        })
                        .collect(),
                )
            })
            .map_err(runtime_error)
    };
    if here {
        return local().await;
    }
    let known = node.read(|s| has(s, &app));
    if !known {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("no daemon or schedule called {name:?} runs in {app}; see `push daemons`"),
        ));
    }
    // Every member: a daemon that moved, or a schedule, left lines on several nodes.
    let targets: Vec<u64> = node.members().iter().map(|m| m.id).collect();
    let op = Op::Tail {
        app: Some(app.clone()),
        name: name.to_string(),
        after: after.to_vec(),
        here: true,
    };
    let mut lines = Vec::new();
    for (_, outcome) in fan_out(node, &targets, op, TAIL_TIMEOUT, local).await {
        if let Ok(Reply::Lines(mut l)) = outcome {
            lines.append(&mut l);
        }
    }
    Ok(Reply::Lines(lines))
}

/// Structured log records from this node's ring, or gathered from every member.
async fn logs(
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
    for (_, outcome) in fan_out(node, &targets, op, TAIL_TIMEOUT, local).await {
        if let Ok(Reply::Logs(mut r)) = outcome {
            records.append(&mut r);
        }
    }
    records.sort_by_key(|r| (r.time_ms, r.node, r.seq));
    Ok(Reply::Logs(records))
}

/// How long `Tail` waits for each node's lines.
const TAIL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest a lambda may run on another node (the caller's own timeout is usually shorter).
const RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3_600);

/// How long `EvalAll` waits for each node.
const EVAL_ALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers one request.
pub async fn handle(node: &Node, op: Op) -> Outcome {
    match op {
        Op::Forwarded { hops, op } => route(node, *op, hops).await,
        op => route(node, op, 0).await,
    }
}

fn reply_of(applied: Applied, index: u64) -> Outcome {
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
        Applied::Failed(body) => return Err(body),
    })
}

/// Proposes `command` here and turns what it applied into a reply (or where to forward).
async fn propose_reply(node: &Node, command: CommandOp) -> Result<Route<Reply>, ErrorBody> {
    Ok(match node.propose(command).await? {
        Route::Done((applied, index)) => Route::Done(reply_of(applied, index)?),
        Route::Forward(leader) => Route::Forward(leader),
    })
}

async fn write(node: &Node, op: &Op, hops: u8, command: CommandOp) -> Outcome {
    node.on_leader(op, hops, || propose_reply(node, command.clone()))
        .await
}

/// A deploy, rollback or restart, recorded in the audit log with the change when `note` says
/// who asked. `op` is what gets forwarded to the leader (the wrapped op when audited).
async fn change(node: &Node, op: &Op, hops: u8, inner: &Op, note: Option<&AuditNote>) -> Outcome {
    let command = match inner {
        Op::Commit {
            app,
            tree,
            message,
            author,
            activate,
        } => CommandOp::Commit {
            app: app.clone(),
            tree: tree.clone(),
            message: message.clone(),
            author: author.clone(),
            activate: *activate,
        },
        Op::Activate { app, version } => CommandOp::Activate {
            app: app.clone(),
            version: *version,
        },
        Op::Restart { app, name } => CommandOp::Restart {
            app: app.clone(),
            name: name.clone(),
        },
        other => {
            return Err(ErrorBody::new(
                ErrorCode::Invalid,
                format!(
                    "only deploys, rollbacks and restarts travel as audited changes, not {other:?}"
                ),
            ))
        }
    };
    let command = match note {
        Some(note) => CommandOp::Audited {
            note: note.clone(),
            op: Box::new(command),
        },
        None => command,
    };
    node.on_leader(op, hops, || {
        let command = command.clone();
        async move {
            if let Op::Commit { app, tree, .. } = inner {
                // The deploy gate runs on the leader only, right before proposing.
                if let Route::Forward(leader) = node.leader_route() {
                    return Ok(Route::Forward(leader));
                }
                gate(node, app, tree).await?;
            }
            propose_reply(node, command).await
        }
    })
    .await
}

async fn read(
    node: &Node,
    op: &Op,
    hops: u8,
    mode: ReadMode,
    f: impl Fn(&State) -> Outcome,
) -> Outcome {
    match mode {
        ReadMode::Stale => node.read(&f),
        ReadMode::Linearizable => {
            node.on_leader(op, hops, || async {
                Ok(match node.linearizable().await? {
                    Route::Done(()) => Route::Done(node.read(&f)?),
                    Route::Forward(leader) => Route::Forward(leader),
                })
            })
            .await
        }
    }
}

/// The deploy gate, run on the leader before a version is committed: every module compiles
/// and the entry module imports in a scratch namespace, or the deploy is refused with the
/// file and line that failed. HEAD and running code are untouched either way.
async fn gate(node: &Node, app: &str, tree: &BTreeMap<String, String>) -> Result<(), ErrorBody> {
    crate::model::code_store::check_file_count(tree.len())
        .map_err(|e| ErrorBody::new(ErrorCode::Invalid, format!("deploy rejected: {e}")))?;
    let (files, number, unchanged) = node.read(|s| {
        let files: BTreeMap<String, ByteBuf> = tree
            .iter()
            .filter_map(|(path, hash)| {
                s.code
                    .blob(hash)
                    .map(|b| (path.clone(), ByteBuf::from(b.to_vec())))
            })
            .collect();
        let app_state = s.code.app(app);
        let number = app_state.map_or(0, |a| a.versions.len() as u64) + 1;
        let unchanged = app_state
            .and_then(|a| a.head_version())
            .is_some_and(|h| h.tree_hash == tree_hash(tree));
        (files, number, unchanged)
    });
    if unchanged || files.len() != tree.len() {
        // Nothing new to check, or missing blobs: the commit itself reports either.
        return Ok(());
    }
    let invalid = |m: String| ErrorBody::new(ErrorCode::Invalid, m);
    let files =
        crate::runtime::sources(files).map_err(|e| invalid(format!("deploy rejected: {e}")))?;
    let entry = crate::runtime::entry_module(&files)
        .map_err(|e| invalid(format!("deploy rejected: {e}")))?;
    match node.runtime.gate(app, number, files, entry).await {
        Ok(None) => Ok(()),
        Ok(Some(error)) => Err(invalid(format!(
            "deploy rejected, HEAD unchanged — {error}"
        ))),
        Err(e) => Err(invalid(format!(
            "deploy rejected, HEAD unchanged — the import check failed: {e}"
        ))),
    }
}

async fn route(node: &Node, op: Op, hops: u8) -> Outcome {
    match &op {
        Op::Ping => Ok(Reply::Pong),
        Op::Audit {
            after,
            limit,
            action,
        } => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                let limit = (*limit).min(crate::model::audit::MAX_ENTRIES);
                Ok(Reply::Audit(s.audit.query(
                    *after,
                    limit,
                    action.as_deref(),
                )))
            })
            .await
        }
        Op::Audited { note, op: inner } => change(node, &op, hops, inner, Some(note)).await,
        Op::AuditRecord(notes) => write(node, &op, hops, CommandOp::Audit(notes.clone())).await,
        Op::Commit { .. } | Op::Activate { .. } | Op::Restart { .. } => {
            change(node, &op, hops, &op, None).await
        }
        Op::Eval {
            session,
            code,
            module,
        } => {
            let (sink, _) = mpsc::unbounded_channel();
            eval(node, *session, code.clone(), module.clone(), &sink).await
        }
        Op::EvalAll { code } => eval_all(node, code.clone()).await,
        Op::SessionOpen => node
            .runtime
            .open_session()
            .await
            .map(|id| Reply::Session { id })
            .map_err(runtime_error),
        Op::SessionClose { session } => node
            .runtime
            .close_session(*session)
            .await
            .map(|existed| Reply::Closed { existed })
            .map_err(runtime_error),
        Op::IsComplete { code } => node
            .runtime
            .is_complete(code.clone())
            .await
            .map(|complete| Reply::IsComplete { complete })
            .map_err(runtime_error),
        Op::Complete {
            session,
            code,
            cursor,
        } => node
            .runtime
            .complete(*session, code.clone(), *cursor)
            .await
            .map(|(start, items)| Reply::Completions { start, items })
            .map_err(runtime_error),
        Op::Inspect { session, expr } => match node.runtime.inspect(*session, expr.clone()).await {
            Ok(i) => Ok(Reply::Inspected(Box::new(i))),
            Err(e) => Err(ErrorBody::new(
                ErrorCode::Invalid,
                format!("cannot inspect {expr:?}: {e}"),
            )),
        },
        Op::QueuePut { queue, values } => {
            let command = CommandOp::QueuePut {
                queue: queue.clone(),
                values: values.clone(),
            };
            write(node, &op, hops, command).await
        }
        Op::QueueAck { queue, id } => {
            let command = CommandOp::QueueAck {
                queue: queue.clone(),
                id: *id,
            };
            write(node, &op, hops, command).await
        }
        Op::QueueTake {
            queue,
            lease_ms,
            wait_ms,
        } => {
            node.on_leader(&op, hops, || take(node, queue, *lease_ms, *wait_ms))
                .await
        }
        Op::QueuePeek { queue, n } => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                let items = s.queues.get(queue).map(|q| q.peek(*n)).unwrap_or_default();
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
        Op::QueueStats => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                let now = s.queues.clock().max(crate::node::now_ms());
                Ok(Reply::QueueStats(
                    s.queues
                        .names()
                        .map(|(name, q)| QueueStat {
                            name: name.clone(),
                            ready: q.ready_count(now),
                            leased: q.leased_count(now),
                            puts: q.puts,
                            acks: q.acks,
                        })
                        .collect(),
                ))
            })
            .await
        }
        Op::Interrupt { session } => node
            .runtime
            .interrupt(*session)
            .await
            .map(|running| Reply::Interrupted { running })
            .map_err(runtime_error),
        Op::Status => Ok(Reply::Status(Box::new(node.status()))),
        Op::Heartbeat(report) => {
            let command = CommandOp::Heartbeat(report.clone());
            write(node, &op, hops, command).await
        }
        Op::Nodes => {
            let now = crate::node::now_ms();
            node.read(|s| {
                Ok(Reply::Nodes(
                    s.nodes
                        .all()
                        .map(|r| NodeEntry {
                            info: r.info.clone(),
                            alive: s.nodes.alive(r.info.id, now),
                            last_seen_ms: r.last_seen_ms,
                        })
                        .collect(),
                ))
            })
        }
        Op::Daemons => node.read(|s| Ok(Reply::Daemons(daemon_rows(s)))),
        Op::Tail {
            app,
            name,
            after,
            here,
        } => tail(node, app.as_deref(), name, after, *here).await,
        Op::Run { func, args, on } => run_lambda(node, func, args, on).await,
        Op::Logs {
            after,
            daemon,
            level,
            here,
        } => logs(node, after, daemon.as_deref(), level.as_deref(), *here).await,
        Op::TsAppend {
            series,
            points,
            config,
        } => {
            if let Some(c) = config {
                if c.partitions == 0 || c.partitions > 1024 {
                    return Err(ErrorBody::new(
                        ErrorCode::Invalid,
                        "partitions must be between 1 and 1024",
                    ));
                }
            }
            let command = CommandOp::TsAppend {
                series: series.clone(),
                points: points.clone(),
                config: config.clone(),
            };
            write(node, &op, hops, command).await
        }
        Op::TsRange {
            series,
            t0,
            t1,
            last,
            read: mode,
        } => {
            read(node, &op, hops, *mode, |s| {
                let points = s.timeseries.get(series).map(|x| match last {
                    Some(n) => x.last(*n),
                    None => x.range(*t0, *t1),
                });
                Ok(Reply::Points(points.unwrap_or_default()))
            })
            .await
        }
        Op::TsStats => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                Ok(Reply::TsStats(s.timeseries.stats()))
            })
            .await
        }
        Op::TsCursor { series, unit, upto } => {
            let command = CommandOp::TsCursor {
                series: series.clone(),
                unit: unit.clone(),
                upto: *upto,
            };
            write(node, &op, hops, command).await
        }
        Op::Forwarded { .. } => Err(ErrorBody::new(
            ErrorCode::Invalid,
            "a forwarded request cannot be forwarded again inside itself",
        )),
        Op::Join { id, addr } => {
            node.on_leader(&op, hops, || async {
                Ok(match node.join(*id, addr).await? {
                    Route::Done(members) => Route::Done(Reply::Joined { members }),
                    Route::Forward(l) => Route::Forward(l),
                })
            })
            .await
        }
        Op::KvGet {
            map,
            key,
            read: mode,
        } => {
            read(node, &op, hops, *mode, |s| {
                Ok(Reply::Value(s.kv.get(map, key).cloned()))
            })
            .await
        }
        Op::KvList {
            map,
            prefix,
            read: mode,
        } => {
            read(node, &op, hops, *mode, |s| {
                Ok(Reply::Keys(s.kv.keys(map, prefix)))
            })
            .await
        }
        Op::KvSet { map, key, value } => {
            let command = CommandOp::KvSet {
                map: map.clone(),
                key: key.clone(),
                value: value.clone(),
            };
            write(node, &op, hops, command).await
        }
        Op::KvDelete { map, key } => {
            let command = CommandOp::KvDelete {
                map: map.clone(),
                key: key.clone(),
            };
            write(node, &op, hops, command).await
        }
        Op::KvCas {
            map,
            key,
            expected,
            new,
        } => {
            let command = CommandOp::KvCas {
                map: map.clone(),
                key: key.clone(),
                expected: expected.clone(),
                new: new.clone(),
            };
            write(node, &op, hops, command).await
        }
        Op::MissingBlobs { hashes } => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                Ok(Reply::Missing(
                    hashes
                        .iter()
                        .filter(|h| !s.code.has_blob(h))
                        .cloned()
                        .collect(),
                ))
            })
            .await
        }
        Op::PutBlobs { blobs } => {
            let size: usize = blobs.iter().map(|b| b.len()).sum();
            if size > MAX_BLOB_BATCH {
                return Err(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!("a blob batch of {size} bytes exceeds {MAX_BLOB_BATCH}; send smaller batches"),
                ));
            }
            write(
                node,
                &op,
                hops,
                CommandOp::PutBlobs {
                    blobs: blobs.clone(),
                },
            )
            .await
        }
        Op::Versions { app } => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                let app = s.code.app(app);
                Ok(Reply::Versions {
                    head: app.and_then(|a| a.head),
                    versions: app
                        .map(|a| a.versions.iter().map(|v| v.info()).collect())
                        .unwrap_or_default(),
                })
            })
            .await
        }
        Op::Diff { app, from, to } => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                s.code.diff(app, *from, *to).map(Reply::Diff)
            })
            .await
        }
        Op::Files { app, version } => {
            read(node, &op, hops, ReadMode::Linearizable, |s| {
                s.code
                    .files(app, *version)
                    .map(|(version, files)| Reply::Files { version, files })
            })
            .await
        }
    }
}
