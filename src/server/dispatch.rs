//! Request dispatch: each [`Op`] becomes a local read, a linearizable read, or a write
//! proposed through Raft; leader-only work is routed by [`Node::on_leader`].

use std::collections::BTreeMap;

use push_protocol::{ByteBuf, ErrorBody, ErrorCode, Op, Outcome, ReadMode, Reply};

use crate::model::code_store::tree_hash;

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

/// The deploy gate, run on the leader before a version is committed: every module compiles
/// and the entry module imports in a scratch namespace, or the deploy is refused with the
/// file and line that failed. HEAD and running code are untouched either way.
async fn gate(node: &Node, app: &str, tree: &BTreeMap<String, String>) -> Result<(), ErrorBody> {
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
            node.on_leader(&op, hops, || {
                let command = command.clone();
                async move {
                    if let Route::Forward(leader) = node.leader_route() {
                        return Ok(Route::Forward(leader));
                    }
                    gate(node, app, tree).await?;
                    Ok(match node.propose(command).await? {
                        Route::Done((applied, index)) => Route::Done(reply_of(applied, index)?),
                        Route::Forward(leader) => Route::Forward(leader),
                    })
                }
            })
            .await
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
