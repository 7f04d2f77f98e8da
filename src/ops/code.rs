//! The code store (`push deploy`, `versions`, `rollback`, `diff`): blobs, versions, and the
//! changes — deploy, activate, restart — with the deploy gate a deploy passes on the leader.

use std::collections::BTreeMap;

use push_protocol::{
    ByteBuf, ErrorBody, ErrorCode, Op, Outcome, ReadMode, Reply, FILE_PART_BYTES, MAX_BLOB_BATCH,
};

use super::leader::{self, Req};
use crate::model::code_store::{is_inline, is_wheel_path, tree_hash, INLINE_MAX, MAX_FILE_BYTES};
use crate::model::CommandOp;
use crate::node::{Node, Route};

/// `MissingBlobs`: which of `hashes` the store lacks.
pub async fn missing_blobs(req: &Req<'_>, hashes: &[String]) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
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

/// `PutBlobs`: a batch of at most [`MAX_BLOB_BATCH`] bytes.
pub async fn put_blobs(req: &Req<'_>, blobs: &[ByteBuf]) -> Outcome {
    check_batch(blobs)?;
    // The files of the large blobs first (durably, one sync for the batch), outside
    // openraft's core: its log append then finds them in place instead of writing them while
    // heartbeats wait. Small blobs stay inline in the entry and the state.
    let large: Vec<ByteBuf> = crate::consensus::blobs::large(blobs).cloned().collect();
    if large.is_empty() {
        return leader::write(req).await;
    }
    let store = req.node.state.blobs().clone();
    tokio::task::spawn_blocking(move || store.write_all(&large))
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::Unavailable,
                format!("cannot store the blobs on this node: {e}; check its disk"),
            )
        })?;
    leader::write(req).await
}

fn check_batch(blobs: &[ByteBuf]) -> Result<(), ErrorBody> {
    let size: usize = blobs.iter().map(|b| b.len()).sum();
    if size > MAX_BLOB_BATCH {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("a blob batch of {size} bytes exceeds {MAX_BLOB_BATCH}; send smaller batches"),
        ));
    }
    Ok(())
}

/// A deploy, rollback or restart, recorded in the audit log with the change when it comes
/// wrapped in `Audited`. A deploy passes the gate on the leader right before it is proposed.
pub async fn change(req: &Req<'_>) -> Outcome {
    let inner = match req.op {
        Op::Audited { op, .. } => op.as_ref(),
        op => op,
    };
    let Some(command) = CommandOp::from_op(req.op) else {
        return leader::write(req).await; // refused, naming the op
    };
    match inner {
        Op::Commit { app, tree, .. } => {
            leader::exclusive(req, || {
                let command = command.clone();
                async move {
                    gate(req.node, app, tree).await?;
                    leader::propose_reply(req.node, command).await
                }
            })
            .await
        }
        _ => leader::write_command(req, command).await,
    }
}

/// The deploy gate, run on the leader before a version is committed: every module compiles
/// and the entry module imports in a scratch namespace, or the deploy is refused with the
/// file and line that failed. HEAD and running code are untouched either way.
async fn gate(node: &Node, app: &str, tree: &BTreeMap<String, String>) -> Result<(), ErrorBody> {
    let invalid = |m: String| ErrorBody::new(ErrorCode::Invalid, m);
    crate::model::code_store::check_file_count(tree.len())
        .map_err(|e| invalid(format!("deploy rejected: {e}")))?;
    let (present, number, unchanged, env, too_big) = node.read(|s| {
        let present: BTreeMap<String, String> = tree
            .iter()
            .filter(|(path, hash)| !is_wheel_path(path) && s.code.has_blob(hash))
            .map(|(path, hash)| (path.clone(), hash.clone()))
            .collect();
        let app_state = s.code.app(app);
        let number = app_state.map_or(0, |a| a.versions.len() as u64) + 1;
        let unchanged = app_state
            .and_then(|a| a.head_version())
            .is_some_and(|h| h.tree_hash == tree_hash(tree));
        let too_big = tree.iter().find_map(|(path, hash)| {
            let size = s.code.blob_size(hash)?;
            (size > MAX_FILE_BYTES).then(|| (path.clone(), size))
        });
        (present, number, unchanged, s.code.env_wheels(tree), too_big)
    });
    if let Some((path, size)) = too_big {
        return Err(invalid(format!(
            "deploy rejected: {path} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit of one file"
        )));
    }
    let sources_in_tree = tree.keys().filter(|p| !is_wheel_path(p)).count();
    if unchanged || present.len() != sources_in_tree {
        // Nothing new to check, or missing blobs: the commit itself reports either.
        return Ok(());
    }
    let files = node.read_files(present).await?;
    let text = files
        .iter()
        .filter(|(p, b)| crate::model::code_store::is_text(p, b));
    crate::model::code_store::check_app_size(text.map(|(p, b)| (p.as_str(), b.len() as u64)))
        .map_err(|e| invalid(format!("deploy rejected: {e}")))?;
    let files =
        crate::runtime::sources(files).map_err(|e| invalid(format!("deploy rejected: {e}")))?;
    let entry = crate::runtime::entry_module(&files)
        .map_err(|e| invalid(format!("deploy rejected: {e}")))?;
    let env = match env {
        Some((hash, wheels)) => Some(
            node.workers
                .ensure_env(
                    &hash,
                    node.blob_files(wheels).await.map_err(|e| {
                        invalid(format!("deploy rejected, HEAD unchanged — {}", e.message))
                    })?,
                )
                .await
                .map_err(|e| invalid(format!("deploy rejected, HEAD unchanged — {e}")))?,
        ),
        None => None,
    };
    let env_dir = env.as_ref().and_then(|e| e.dir.as_deref());
    match node.workers.gate(app, number, files, entry, env_dir).await {
        Ok(None) => Ok(()),
        Ok(Some(error)) => Err(invalid(format!(
            "deploy rejected, HEAD unchanged — {error}"
        ))),
        Err(e) => Err(invalid(format!(
            "deploy rejected, HEAD unchanged — the import check failed: {e}"
        ))),
    }
}

/// `Platform`: this node's Python, in the terms `pip download` takes.
pub async fn platform(node: &Node) -> Outcome {
    node.workers
        .platform()
        .await
        .map(Reply::Platform)
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::Unavailable,
                format!("cannot tell this node's Python platform: {e}"),
            )
        })
}

/// `Envs`: every app environment the state knows (from its versions' wheels), with its size
/// on this node's disk when installed here.
pub async fn envs(node: &Node) -> Outcome {
    let envs_dir = node.workers.envs_dir();
    let rows = node.read(|s| s.code.envs());
    Ok(Reply::Envs(
        rows.into_iter()
            .map(|mut row| {
                let dir = crate::workers::envs::env_dir(&envs_dir, &row.hash);
                row.bytes = dir.is_dir().then(|| crate::workers::envs::size(&dir));
                row
            })
            .collect(),
    ))
}

/// `Versions`: an app's history and HEAD.
pub async fn versions(req: &Req<'_>, app: &str) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
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

/// `Diff`: what changed between two versions (trees read linearizably on the leader, the
/// bytes from its blob files).
pub async fn diff(req: &Req<'_>, app: &str, from: u64, to: u64) -> Outcome {
    let node = req.node;
    leader::run(req, || async {
        Ok(match node.linearizable().await? {
            Route::Done(()) => {
                let (a, b) = node.read(|s| -> Result<_, ErrorBody> {
                    Ok((
                        s.code.tree(app, Some(from))?.1,
                        s.code.tree(app, Some(to))?.1,
                    ))
                })?;
                let (a, b) = (node.read_files(a).await?, node.read_files(b).await?);
                Route::Done(Reply::Diff(crate::model::code_store::diff(
                    from, &a, to, &b,
                )))
            }
            Route::Forward(leader) => Route::Forward(leader),
        })
    })
    .await
}

/// `Files`: the files of a version (HEAD when None).
pub async fn files(req: &Req<'_>, app: &str, version: Option<u64>) -> Outcome {
    let node = req.node;
    leader::run(req, || async {
        Ok(match node.linearizable().await? {
            Route::Done(()) => {
                let (version, tree) = node.read(|s| s.code.tree(app, version))?;
                let files = node.read_files(tree).await?;
                Route::Done(Reply::Files { version, files })
            }
            Route::Forward(leader) => Route::Forward(leader),
        })
    })
    .await
}

/// `FileSizes`: a version's paths with each file's blob hash and size, read on the leader.
pub async fn file_sizes(req: &Req<'_>, app: &str, version: Option<u64>) -> Outcome {
    let node = req.node;
    leader::run(req, || async {
        Ok(match node.linearizable().await? {
            Route::Done(()) => {
                let (version, files) = node.read(|s| {
                    s.code.tree(app, version).map(|(version, tree)| {
                        let files = tree
                            .into_iter()
                            .map(|(path, hash)| {
                                let size = s.code.blob_size(&hash).unwrap_or(0);
                                (path, (hash, size))
                            })
                            .collect();
                        (version, files)
                    })
                })?;
                Route::Done(Reply::FileSizes { version, files })
            }
            Route::Forward(leader) => Route::Forward(leader),
        })
    })
    .await
}

/// `FilePart`: up to [`FILE_PART_BYTES`] of one file of a version, from `offset`, read on the
/// leader (which has every committed version).
pub async fn file_part(req: &Req<'_>, app: &str, version: u64, path: &str, offset: u64) -> Outcome {
    let node = req.node;
    leader::run(req, || async {
        Ok(match node.linearizable().await? {
            Route::Done(()) => {
                let (_, tree) = node.read(|s| s.code.tree(app, Some(version)))?;
                let hash = tree.get(path).cloned().ok_or_else(|| {
                    ErrorBody::new(
                        ErrorCode::NotFound,
                        format!("{app}@v{version} has no file {path:?}"),
                    )
                })?;
                let shared = node.state.clone();
                let path = path.to_string();
                let bytes = tokio::task::spawn_blocking(move || {
                    shared.read_blob_part(&hash, offset, FILE_PART_BYTES)
                })
                .await
                .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
                .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, format!("{path}: {e}")))?;
                Route::Done(Reply::FilePart(ByteBuf::from(bytes)))
            }
            Route::Forward(leader) => Route::Forward(leader),
        })
    })
    .await
}

/// `JoinBlob`: a blob made of pieces uploaded before. The leader checks the pieces' bytes
/// against the hash before it proposes, so every node joins them the same way.
pub async fn join_blob(req: &Req<'_>, hash: &str, size: u64, pieces: &[String]) -> Outcome {
    if size > MAX_FILE_BYTES {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("a blob of {size} bytes is over the {MAX_FILE_BYTES}-byte limit of one file"),
        ));
    }
    if is_inline(size) {
        return Err(ErrorBody::new(
            ErrorCode::Invalid,
            format!(
                "a blob of {size} bytes is uploaded whole (at most {INLINE_MAX} bytes), not in \
                 pieces; send it with PutBlobs"
            ),
        ));
    }
    if req.node.is_leader() {
        let store = req.node.state.blobs().clone();
        let (hash_, pieces_) = (hash.to_string(), pieces.to_vec());
        let inline = req
            .node
            .read(|s| crate::consensus::blobs::held_inline(s, pieces));
        let joined = tokio::task::spawn_blocking(move || {
            crate::consensus::blobs::check_join(&store, &hash_, size, &pieces_, &inline)
        })
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        joined.map_err(|e| ErrorBody::new(ErrorCode::Invalid, format!("{e}; upload it again")))?;
    }
    leader::write(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_batch_over_the_limit_is_refused() {
        assert!(check_batch(&[ByteBuf::from(vec![0u8; MAX_BLOB_BATCH])]).is_ok());
        let e = check_batch(&[
            ByteBuf::from(vec![0u8; MAX_BLOB_BATCH]),
            ByteBuf::from(vec![0u8; 1]),
        ])
        .expect_err("too large");
        assert_eq!(e.code, ErrorCode::TooLarge);
        assert!(e.message.contains("send smaller batches"), "{}", e.message);
    }
}
