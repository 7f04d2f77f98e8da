//! Hot reload: follows every app's HEAD in the applied state and loads new versions.
//!
//! Runs as one task per node. When HEAD moves (deploy or rollback), the version's files are
//! read from the local state and loaded into every Python worker; the swap happens inside
//! each worker's Python under its lock, so requests in flight finish on the old code and new ones see the new.
//! A version that fails to load here is recorded (see `push status`) and the node keeps
//! serving the previous one.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Node;
use crate::runtime::{entry_module, sources};
use crate::shutdown::Shutdown;
use crate::workers::Pool;

/// Follows HEADs until shutdown.
pub async fn follow_heads(node: Arc<Node>, workers: Arc<Pool>, mut shutdown: Shutdown) {
    let mut applied = node.state.subscribe();
    let mut attempted: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let heads = node.read(|s| s.code.heads());
        for (app, head) in heads {
            if attempted.get(&app) == Some(&head) {
                continue;
            }
            attempted.insert(app.clone(), head);
            let files = node.read(|s| s.code.files(&app, Some(head)));
            let loaded = match files {
                Ok((_, files)) => match sources(files) {
                    Ok(files) => match entry_module(&files) {
                        Ok(entry) => workers
                            .load(&app, head, files, entry)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.message),
            };
            match loaded {
                Ok(()) => tracing::info!(%app, version = head, "now serving"),
                Err(e) => {
                    tracing::error!(%app, version = head, "failed to load; still serving the previous version: {e}")
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
    }
}
