//! Request dispatch: each [`Op`] becomes a local read, a linearizable read, or a write
//! proposed through Raft; leader-only work is routed by [`Node::on_leader`].

use push_protocol::{ErrorBody, ErrorCode, Op, Outcome, ReadMode, Reply};

use crate::model::{Applied, CommandOp, State};
use crate::node::{Node, Route};

/// Most bytes one `PutBlobs` may carry; the CLI batches below this.
pub const MAX_BLOB_BATCH: usize = 4 << 20;

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
        Applied::Failed(body) => return Err(body),
    })
}

async fn write(node: &Node, op: &Op, hops: u8, command: CommandOp) -> Outcome {
    node.on_leader(op, hops, || {
        let command = command.clone();
        async move {
            Ok(match node.propose(command).await? {
                Route::Done((applied, index)) => Route::Done(reply_of(applied, index)?),
                Route::Forward(leader) => Route::Forward(leader),
            })
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

async fn route(node: &Node, op: Op, hops: u8) -> Outcome {
    match &op {
        Op::Ping => Ok(Reply::Pong),
        Op::Status => Ok(Reply::Status(Box::new(node.status()))),
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
        Op::Commit {
            app,
            tree,
            message,
            author,
            activate,
        } => {
            let command = CommandOp::Commit {
                app: app.clone(),
                tree: tree.clone(),
                message: message.clone(),
                author: author.clone(),
                activate: *activate,
            };
            write(node, &op, hops, command).await
        }
        Op::Activate { app, version } => {
            write(
                node,
                &op,
                hops,
                CommandOp::Activate {
                    app: app.clone(),
                    version: *version,
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
