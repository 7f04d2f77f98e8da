//! The Raft state machine: hands committed entries to [`crate::model::apply`], builds and
//! installs snapshots, and keeps the newest snapshot on disk (in the current format; a file of
//! an older one is rewritten when opened, and installs of any readable format are accepted —
//! [`super::format`] reads them).
//!
//! The state lives behind a `RwLock` shared with the server, which reads it for queries;
//! lock sections are short and never cross an `.await`. Every apply bumps a watch channel so
//! the runtime and waiting readers learn of new state without polling.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::format::{self, SNAPSHOT_MAGIC};
use super::TypeConfig;
use crate::model::{self, Applied, State};

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The applied state, as shared with readers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applier {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    pub state: State,
}

/// A snapshot as stored on disk; `data` is the state as [`format::encode_state`] writes it.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

/// The state readers share with the state machine.
pub struct SharedState {
    data: RwLock<Applier>,
    applied: tokio::sync::watch::Sender<u64>,
}

impl SharedState {
    pub fn read(&self) -> RwLockReadGuard<'_, Applier> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applier> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe to "something was applied" (the value is the last applied index).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

/// The state machine store given to openraft.
pub struct StateMachineStore {
    shared: Arc<SharedState>,
    dir: PathBuf,
    /// The newest snapshot, shared with the builders openraft asks for.
    current: Arc<Mutex<Option<Arc<StoredSnapshot>>>>,
    snapshot_seq: Arc<AtomicU64>,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageError::IO {
        source: StorageIOError::new(
            ErrorSubject::StateMachine,
            verb,
            AnyError::error(e.to_string()),
        ),
    }
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, restoring the newest snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<StateMachineStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SNAPSHOT_FILE);
        let (applier, current) = if path.exists() {
            let bytes = std::fs::read(&path)?;
            let what = path.display().to_string();
            let (stored, version): (StoredSnapshot, u32) =
                format::decode_file(&bytes, SNAPSHOT_MAGIC, &what)?;
            let applier: Applier = format::decode_state(&stored.data, &what)?;
            let stored = if version == push_protocol::format::highest() {
                stored
            } else {
                // Rewrite in the current format, state bytes included (they are what
                // followers are sent).
                let stored = StoredSnapshot {
                    meta: stored.meta,
                    data: format::encode_state(&applier)?,
                };
                let bytes = format::encode_file(SNAPSHOT_MAGIC, &stored)?;
                format::replace_file(dir, SNAPSHOT_FILE, &bytes)?;
                tracing::info!(
                    from = version,
                    to = push_protocol::format::highest(),
                    "migrated the snapshot to the current format"
                );
                stored
            };
            (applier, Some(Arc::new(stored)))
        } else {
            (Applier::default(), None)
        };
        let index = applier.last_applied.map_or(0, |l| l.index);
        let (applied, _) = tokio::sync::watch::channel(index);
        Ok(StateMachineStore {
            shared: Arc::new(SharedState {
                data: RwLock::new(applier),
                applied,
            }),
            dir: dir.to_path_buf(),
            current: Arc::new(Mutex::new(current)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    fn set_current(&self, stored: StoredSnapshot) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(stored));
    }

    fn persist(&self, stored: &StoredSnapshot) -> std::io::Result<()> {
        let bytes = format::encode_file(SNAPSHOT_MAGIC, stored)?;
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// Writes the snapshot file of a new data dir's state directory `dir` (`push restore`): the
/// state as applied at `last`, with `membership`, so that a node opening the data dir starts
/// from it (openraft treats the log as purged up to `last`).
pub fn seed(
    dir: &Path,
    last: LogId<u64>,
    membership: StoredMembership<u64, BasicNode>,
    state: State,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let applier = Applier {
        last_applied: Some(last),
        membership: membership.clone(),
        state,
    };
    let stored = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: Some(last),
            last_membership: membership,
            snapshot_id: format!("restored-{}-{}", last.leader_id.term, last.index),
        },
        data: format::encode_state(&applier)?,
    };
    let bytes = format::encode_file(SNAPSHOT_MAGIC, &stored)?;
    let path = dir.join(SNAPSHOT_FILE);
    let mut f = std::fs::File::create(&path)?;
    std::io::Write::write_all(&mut f, &bytes)?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (data, last_applied, membership) = {
            let applier = self.shared.read();
            let data = format::encode_state(&*applier).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            (data, applier.last_applied, applier.membership.clone())
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::metrics()
            .snapshots
            .with_label_values(&["built"])
            .inc();
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.persist(&stored)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.set_current(stored);
        tracing::info!(last = ?last_applied, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let applier = self.shared.read();
        Ok((applier.last_applied, applier.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut out = Vec::new();
        let mut last = None;
        {
            let mut applier = self.shared.write();
            for entry in entries {
                applier.last_applied = Some(entry.log_id);
                last = Some(entry.log_id.index);
                out.push(match entry.payload {
                    EntryPayload::Blank => Applied::Nothing,
                    EntryPayload::Normal(command) => model::apply(&mut applier.state, &command),
                    EntryPayload::Membership(m) => {
                        applier.membership = StoredMembership::new(Some(entry.log_id), m);
                        Applied::Nothing
                    }
                });
            }
        }
        if let Some(index) = last {
            self.shared.applied.send_replace(index);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachineStore {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
            current: self.current.clone(),
            snapshot_seq: self.snapshot_seq.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        // Any readable format (a leader of an older release sends its own); kept on disk in
        // the current one.
        let (applier, version): (Applier, u32) =
            format::decode_file(&data, format::STATE_MAGIC, "an installed snapshot")
                .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        // Bytes already in the current format are kept as they came (no second copy).
        let data = if version == push_protocol::format::highest() {
            data
        } else {
            format::encode_state(&applier).map_err(|e| sm_err(ErrorVerb::Read, e))?
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&stored)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let index = applier.last_applied.map_or(0, |l| l.index);
        *self.shared.write() = applier;
        self.set_current(stored);
        self.shared.applied.send_replace(index);
        crate::metrics::metrics()
            .snapshots
            .with_label_values(&["installed"])
            .inc();
        tracing::info!(last = ?meta.last_log_id, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(current.map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
