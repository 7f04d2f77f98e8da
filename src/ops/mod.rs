//! Request handling, by family: each [`Op`] is routed once, here, to the file of its family,
//! which answers it with the node's primitives (propose, read, forward through [`leader`],
//! ask other members through [`fanout`]). The mini-redis `cmd/` idea: "where is `KvSet`
//! handled" is a file name.
//!
//! - [`kv`]: replicated dicts. [`queue`]: queues (put, lease-taking, ack, peek, stats).
//! - [`ts`]: timeseries. [`code`]: the code store, deploys (with the deploy gate), rollbacks.
//! - [`eval`]: evaluations, sessions, completion, inspection, interrupts.
//! - [`tasks`]: daemons, lambdas (`push.run`), their log lines.
//! - [`cluster`]: ping, status, join, the node registry, logs, the audit log.
//! - [`audit`]: noting what a person asks for, and proposing the notes; [`statements`]: whether
//!   code evaluated in a module changes it (a hot-patch) or only reads (an eval).
//! - [`users`]: users and their secrets (`push user`).
//! - [`settings`]: each app's secrets and config (`push secret`, `push config`).
//! - [`debug`]: post-mortem of kept failures and call tracing (`push errors`, `:pm`, `:trace`).
//! - [`backup`]: a consistent copy of the state, streamed (`push backup`).
//! - [`bridge`]: the cluster as the Python runtime sees it.
//!
//! **Architecture Invariant:** a request descends: edge → here → one family file →
//! [`leader`] / [`fanout`] → node primitives. Nothing below calls back up into this layer.

pub mod audit;
pub mod backup;
pub mod bridge;
pub mod cluster;
pub mod code;
pub mod debug;
pub mod eval;
pub mod fanout;
pub mod kv;
pub mod leader;
pub mod queue;
pub mod settings;
pub mod statements;
pub mod tasks;
pub mod ts;
pub mod users;

use push_protocol::{ErrorBody, ErrorCode, Op, Outcome, Reply};
use tokio::sync::mpsc;

use crate::node::Node;
use leader::Req;

/// Answers one request, sending intermediate replies (an eval's output) to `progress`.
///
/// `who` is the client as it named itself, for the audit log; None for the cluster's own
/// requests between nodes.
pub async fn handle_streaming(
    node: &Node,
    op: Op,
    progress: &mpsc::Sender<Reply>,
    who: Option<&str>,
) -> Outcome {
    // A membership change is noted once it has committed.
    let member_note = audit::membership(node, &op, who);
    let op = match who {
        Some(who) => audit::wrap(node, op, who),
        None => op,
    };
    let outcome = match op {
        Op::Eval {
            session,
            code,
            module,
        } => eval::eval(node, session, code, module, progress).await,
        Op::Backup => backup::backup(node, 0, progress).await,
        Op::Debug {
            action,
            here,
            scope,
        } => debug::debug(node, &action, here, &scope, progress).await,
        Op::Forwarded { hops, op } if matches!(*op, Op::Backup) => {
            backup::backup(node, hops, progress).await
        }
        op => handle(node, op).await,
    };
    if let (Some(note), Ok(_)) = (member_note, &outcome) {
        node.audit.note(note);
    }
    outcome
}

/// Answers one request.
pub async fn handle(node: &Node, op: Op) -> Outcome {
    let (op, hops) = match op {
        Op::Forwarded { hops, op } => (*op, hops),
        op => (op, 0),
    };
    route(&Req {
        node,
        op: &op,
        hops,
    })
    .await
}

/// The one place an op meets its family.
async fn route(req: &Req<'_>) -> Outcome {
    let node = req.node;
    match req.op {
        Op::Ping => Ok(Reply::Pong),
        Op::Status => Ok(Reply::Status(Box::new(node.status()))),
        Op::Join { id, addr } => cluster::join(req, *id, addr).await,
        Op::JoinLearner { id, addr } => cluster::join_learner(req, *id, addr).await,
        Op::Promote { id } => cluster::promote(req, *id).await,
        Op::Remove { id } => cluster::remove(req, *id).await,
        Op::Nodes => Ok(cluster::nodes(node)),
        Op::Heartbeat(_) | Op::AuditRecord(_) => leader::write(req).await,
        Op::Logs {
            after,
            daemon,
            level,
            here,
        } => cluster::logs(node, after, daemon.as_deref(), level.as_deref(), *here).await,
        Op::Audit {
            after,
            limit,
            action,
        } => cluster::audit(req, *after, *limit, action.as_deref()).await,

        Op::KvGet { map, key, read } => kv::get(req, map, key, *read).await,
        Op::KvList { map, prefix, read } => kv::list(req, map, prefix, *read).await,
        Op::KvSet { .. } | Op::KvDelete { .. } | Op::KvCas { .. } => kv::write(req).await,

        Op::QueuePut { .. } | Op::QueueAck { .. } => queue::write(req).await,
        Op::QueueTake {
            queue,
            lease_ms,
            wait_ms,
        } => queue::take(req, queue, *lease_ms, *wait_ms).await,
        Op::QueuePeek { queue, n } => queue::peek(req, queue, *n).await,
        Op::QueueStats => queue::stats(req).await,

        Op::TsAppend { config, .. } => ts::append(req, config.as_ref()).await,
        Op::TsRange {
            series,
            t0,
            t1,
            last,
            read,
        } => ts::range(req, series, *t0, *t1, *last, *read).await,
        Op::TsStats => ts::stats(req).await,
        Op::TsCursor { .. } => leader::write(req).await,
        Op::Publish { .. } => leader::write(req).await,

        Op::Audited { op, .. } if users::is_change(op) => users::change(req).await,
        Op::UserAdd { .. } | Op::UserRevoke { .. } | Op::UserRotate { .. } => {
            users::change(req).await
        }
        Op::UserList => users::list(req).await,

        Op::Audited { op, .. } if settings::is_change(op) => leader::write(req).await,
        Op::SecretSet { .. } | Op::ConfigSet { .. } => leader::write(req).await,
        Op::Secrets { app } => settings::secrets(req, app).await,
        Op::SecretGet { app, name } => settings::secret(req, app, name).await,
        Op::Config { app } => settings::config(req, app).await,
        Op::WhoAmI => Err(ErrorBody::new(
            ErrorCode::Invalid,
            "`WhoAmI` is answered by the node a client connects to, about that connection",
        )),

        Op::MissingBlobs { hashes } => code::missing_blobs(req, hashes).await,
        Op::PutBlobs { blobs } => code::put_blobs(req, blobs).await,
        Op::JoinBlob { hash, size, pieces } => code::join_blob(req, hash, *size, pieces).await,
        Op::Commit { .. } | Op::Activate { .. } | Op::Restart { .. } | Op::Audited { .. } => {
            code::change(req).await
        }
        Op::Versions { app } => code::versions(req, app).await,
        Op::Diff { app, from, to } => code::diff(req, app, *from, *to).await,
        Op::Files { app, version } => code::files(req, app, *version).await,
        Op::FileSizes { app, version } => code::file_sizes(req, app, *version).await,
        Op::FilePart {
            app,
            version,
            path,
            offset,
        } => code::file_part(req, app, *version, path, *offset).await,
        Op::Platform => code::platform(node).await,
        Op::Envs => code::envs(node).await,

        Op::Eval {
            session,
            code,
            module,
        } => {
            let (sink, _) = mpsc::channel(1);
            eval::eval(node, *session, code.clone(), module.clone(), &sink).await
        }
        Op::EvalAll { code } => eval::eval_all(node, code.clone()).await,
        Op::SessionOpen
        | Op::SessionOpenOn { .. }
        | Op::SessionClose { .. }
        | Op::IsComplete { .. }
        | Op::Complete { .. }
        | Op::Inspect { .. }
        | Op::Interrupt { .. } => eval::session(node, req.op).await,

        Op::Debug {
            action,
            here,
            scope,
        } => {
            let (sink, _) = mpsc::channel(1);
            debug::debug(node, action, *here, scope, &sink).await
        }

        Op::Daemons => Ok(Reply::Daemons(tasks::daemons(node).await)),
        Op::Tail {
            app,
            name,
            after,
            here,
        } => tasks::tail(node, app.as_deref(), name, after, *here).await,
        Op::Run { func, args, on } => tasks::run(node, func, args, on).await,

        Op::Backup => {
            let (sink, _) = mpsc::channel(1);
            backup::backup(node, req.hops, &sink).await
        }

        Op::Forwarded { .. } => Err(ErrorBody::new(
            ErrorCode::Invalid,
            "a forwarded request cannot be forwarded again inside itself",
        )),
    }
}
