//! Hot reload: follows every app's HEAD in the applied state and loads new versions.
//!
//! Runs as one task per node. When HEAD moves (deploy or rollback), the version's files are
//! read from the local state and loaded into every Python worker; the swap happens inside
//! each worker's Python under its lock, so requests in flight finish on the old code and new ones see the new.
//! A version with dependencies first gets its environment installed here (once per
//! environment hash) and runs in that environment's worker pool ([`Pool::load_in`]); the
//! environments no recent version uses are removed (`--keep-envs`). A WSGI/ASGI app without
//! dependencies gets a pool of its own too (see `workers::pools`).
//! A version that fails to load here is recorded (see `push status`) and the node keeps
//! serving the previous one.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Node;
use crate::model::code_store::{is_text, is_wheel_path};
use crate::runtime::{entry_module, sources, web_app};
use crate::shutdown::Shutdown;
use crate::workers::{Env, Pool};

/// Follows HEADs until shutdown.
pub async fn follow_heads(node: Arc<Node>, workers: Arc<Pool>, mut shutdown: Shutdown) {
    let mut applied = node.state.subscribe();
    let mut attempted: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let mut loaded_any = false;
        let heads = node.read(|s| s.code.heads());
        for (app, head) in heads {
            if attempted.get(&app) == Some(&head) {
                continue;
            }
            attempted.insert(app.clone(), head);
            loaded_any = true;
            let loaded = load(&node, &workers, &app, head).await;
            match loaded {
                Ok(()) => tracing::info!(%app, version = head, "now serving"),
                Err(e) => {
                    tracing::error!(%app, version = head, "failed to load; still serving the previous version: {e}")
                }
            }
        }
        if loaded_any {
            remove_unused_envs(&node, &workers);
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
    }
}

/// Loads `app`'s version `head` into the workers, in its environment (installed here first
/// when it has dependencies). The error says why in words.
async fn load(node: &Node, workers: &Arc<Pool>, app: &str, head: u64) -> Result<(), String> {
    let (tree, env) = node.read(|s| {
        let env = s
            .code
            .app(app)
            .and_then(|a| a.version(head))
            .and_then(|v| s.code.env_wheels(&v.tree));
        (s.code.tree(app, Some(head)), env)
    });
    let (_, tree) = tree.map_err(|e| e.message)?;
    let tree: BTreeMap<String, String> = tree
        .into_iter()
        .filter(|(path, _)| !is_wheel_path(path))
        .collect();
    let bytes = node.read_files(tree.clone()).await.map_err(|e| e.message)?;
    let binary: Vec<String> = bytes
        .iter()
        .filter(|(path, b)| !is_text(path, b))
        .map(|(path, _)| path.clone())
        .collect();
    let mut files = sources(bytes).map_err(|e| e.to_string())?;
    // Binary files reach the workers as the blob files to link ([`crate::runtime::LINK`]).
    let binary = binary
        .into_iter()
        .map(|path| (path.clone(), tree[&path].clone()))
        .collect();
    for (path, blob) in node.blob_files(binary).await.map_err(|e| e.message)? {
        files.insert(
            format!("{}{path}", crate::runtime::LINK),
            blob.to_string_lossy().to_string(),
        );
    }
    let entry = entry_module(&files).map_err(|e| e.to_string())?;
    let web = web_app(&files).map_err(|e| e.to_string())?.is_some();
    let env = match env {
        Some((hash, wheels)) => Some(
            workers
                .ensure_env(&hash, node.blob_files(wheels).await.map_err(|e| e.message)?)
                .await
                .map_err(|e| e.to_string())?,
        ),
        // A WSGI/ASGI app gets a pool of its own, so its secrets and config can be in
        // `os.environ` where no other app's code runs.
        None if web => Some(Env::web()),
        None => None,
    };
    workers
        .load_in(app, head, files, entry, env)
        .await
        .map_err(|e| e.to_string())
}

/// Removes the environments that neither the last `--keep-envs` versions of any app nor a
/// running pool use (and that are not brand new: a deploy gate may be using one).
fn remove_unused_envs(node: &Node, workers: &Pool) {
    let keep = node.read(|s| s.code.envs_to_keep(workers.keep_envs()));
    let keep = keep.union(&workers.envs_in_use()).cloned().collect();
    let dir = workers.envs_dir();
    for hash in crate::workers::envs::remove_unused(&dir, &keep, ENV_MIN_AGE) {
        tracing::info!(env = %hash, "removed an environment no recent version uses");
    }
}

/// An environment younger than this is never removed (a deploy gate may have just made it).
const ENV_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(600);
