//! The Raft state machine: hands committed entries to [`crate::model::apply`], builds and
//! installs snapshots, and keeps the newest snapshot on disk (in the current format; a file of
//! an older one is rewritten when opened, and installs of any readable format are accepted —
//! [`super::snapshot_file`] reads and writes them as streams).
//!
//! Snapshots never exist as one byte vector: a build encodes the state straight into a file,
//! openraft sends a follower 4 MiB chunks read from that file, the follower writes the chunks
//! into `snapshot.incoming` and decodes from there once they are all in and checked.
//!
//! The state lives behind a `RwLock` shared with the server, which reads it for queries;
//! lock sections are short and never cross an `.await`. Every apply bumps a watch channel so
//! the runtime and waiting readers learn of new state without polling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};

use super::blobs::{self, BlobStore};
use super::durable::DurableIndex;
pub use super::snapshot_file::Applier;
use super::snapshot_file::{self, SnapshotFile, STREAMED_SINCE};
use super::TypeConfig;
use crate::model::{self, Applied, State};

const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The folder of the blob files ([`super::blobs`]).
pub const BLOBS: &str = "blobs";
/// Where a build writes the next snapshot file before renaming it over the current one.
const BUILDING: &str = "snapshot.bin.building";
/// Where an install writes the next snapshot file before renaming it over the current one.
const INSTALLING: &str = "snapshot.bin.installing";
/// Where the chunks of a snapshot sent by the leader land.
const INCOMING: &str = "snapshot.incoming";
/// Files a crash can leave behind; removed when the state machine opens.
const LEFTOVERS: [&str; 4] = [BUILDING, INSTALLING, INCOMING, "snapshot.bin.migrating"];

/// The snapshot on disk: its meta and where its state bytes (what followers are sent)
/// start in the file.
#[derive(Clone)]
struct Current {
    meta: SnapshotMeta<u64, BasicNode>,
    state_at: u64,
}

/// The state readers share with the state machine.
pub struct SharedState {
    data: RwLock<Applier>,
    blobs: BlobStore,
    applied: tokio::sync::watch::Sender<u64>,
}

impl SharedState {
    pub fn read(&self) -> RwLockReadGuard<'_, Applier> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applier> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The blob files of this node (every blob the applied state lists and does not hold
    /// itself is there; read blobs with [`SharedState::read_tree`] and its siblings).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
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
    current: Arc<Mutex<Option<Current>>>,
    snapshot_seq: Arc<AtomicU64>,
    /// The log's on-disk index, when the leader's own entries may be committed before they
    /// are on its disk: an entry is applied only once it is ([`super::durable`]).
    durable: Option<DurableIndex>,
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
        for leftover in LEFTOVERS {
            match std::fs::remove_file(dir.join(leftover)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let store = BlobStore::open(&dir.join(BLOBS))?;
        let path = dir.join(SNAPSHOT_FILE);
        let (applier, current) = if path.exists() {
            let mut loaded = snapshot_file::read_snapshot(&path)?;
            if loaded.version >= STREAMED_SINCE {
                // Blobs the snapshot carries but the disk lacks (a restore, a lost file).
                let mut file = std::fs::File::open(&path)?;
                let at = snapshot_file::section_of(&mut file, loaded.state_at)?;
                super::blob_section::install(&mut file, at, &store)
                    .map_err(std::io::Error::other)?;
            }
            let inline = loaded.applier.state.code.needs_move();
            blobs::move_to_files(&store, &mut loaded.applier.state)
                .map_err(std::io::Error::other)?;
            let mut current = Current {
                meta: loaded.meta,
                state_at: loaded.state_at,
            };
            if loaded.version != push_protocol::format::highest() || inline {
                // Rewrite in the current format, state bytes included (they are what
                // followers are sent), blobs as files.
                let tmp = dir.join("snapshot.bin.migrating");
                snapshot_file::write_snapshot(&tmp, &current.meta, &loaded.applier, Some(&store))?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(dir)?.sync_all()?;
                current.state_at = state_at(&path)?;
                tracing::info!(
                    from = loaded.version,
                    to = push_protocol::format::highest(),
                    "migrated the snapshot to the current format"
                );
            }
            (loaded.applier, Some(current))
        } else {
            (Applier::default(), None)
        };
        let index = applier.last_applied.map_or(0, |l| l.index);
        let (applied, _) = tokio::sync::watch::channel(index);
        Ok(StateMachineStore {
            shared: Arc::new(SharedState {
                data: RwLock::new(applier),
                blobs: store,
                applied,
            }),
            dir: dir.to_path_buf(),
            current: Arc::new(Mutex::new(current)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            durable: None,
        })
    }

    /// Applies an entry only once `durable` (the log's on-disk index) reaches it.
    pub fn after_log(mut self, durable: DurableIndex) -> StateMachineStore {
        self.durable = Some(durable);
        self
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    /// Builds the snapshot file of the applied state and publishes it ([`publish`]);
    /// blocking (run off the async threads). Holds the read lock while it encodes, so what
    /// it writes is one applied index. Returns the file built, open, and its place.
    fn build_blocking(
        shared: &SharedState,
        dir: &Path,
        slot: &Mutex<Option<Current>>,
        snapshot_id: impl FnOnce(Option<LogId<u64>>) -> String,
    ) -> std::io::Result<(std::fs::File, Current)> {
        let tmp = dir.join(BUILDING);
        let meta = {
            let applier = shared.read();
            let meta = SnapshotMeta {
                last_log_id: applier.last_applied,
                last_membership: applier.membership.clone(),
                snapshot_id: snapshot_id(applier.last_applied),
            };
            snapshot_file::write_snapshot(&tmp, &meta, &applier, Some(&shared.blobs))?;
            meta
        };
        publish(slot, dir, &tmp, meta)
    }

    /// The current snapshot and its file, opened at its state bytes. The file is opened
    /// under the lock that publishing takes, so it is the one `current` describes.
    fn open_current(&self) -> std::io::Result<Option<(Current, std::fs::File)>> {
        let slot = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = slot.clone() else {
            return Ok(None);
        };
        let file = std::fs::File::open(self.dir.join(SNAPSHOT_FILE))?;
        Ok(Some((current, file)))
    }
}

/// Makes the fsynced snapshot file at `tmp` (of `meta`) the current one: renames it over the
/// snapshot file and records it in `slot` under one lock, unless a newer snapshot already is
/// current (a build and an install can finish in either order) — then `tmp` is removed.
/// Either way returns `tmp`'s file, opened before the rename (still readable when removed),
/// and where its state bytes are.
fn publish(
    slot: &Mutex<Option<Current>>,
    dir: &Path,
    tmp: &Path,
    meta: SnapshotMeta<u64, BasicNode>,
) -> std::io::Result<(std::fs::File, Current)> {
    let file = std::fs::File::open(tmp)?;
    let current = Current {
        state_at: state_at(tmp)?,
        meta,
    };
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    let newer = slot
        .as_ref()
        .is_some_and(|c| c.meta.last_log_id > current.meta.last_log_id);
    if newer {
        std::fs::remove_file(tmp)?;
    } else {
        std::fs::rename(tmp, dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        *slot = Some(current.clone());
    }
    Ok((file, current))
}

/// Where the state bytes start in the snapshot file at `path` (read from its head only when
/// it has the streamed layout; files of older formats are only written by a node held to one,
/// and read whole).
fn state_at(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut head = Vec::with_capacity(super::format::HEADER_LEN + 8);
    std::fs::File::open(path)?
        .take(head.capacity() as u64)
        .read_to_end(&mut head)?;
    let streamed = head.len() == super::format::HEADER_LEN + 8
        && head.starts_with(&super::format::SNAPSHOT_MAGIC)
        && u32::from_le_bytes([head[8], head[9], head[10], head[11]]) >= STREAMED_SINCE;
    if streamed {
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[12..20]);
        Ok(head.len() as u64 + u64::from_le_bytes(len))
    } else {
        Ok(snapshot_file::read_snapshot(path)?.state_at)
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
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: membership,
        snapshot_id: format!("restored-{}-{}", last.leader_id.term, last.index),
    };
    let tmp = dir.join(BUILDING);
    snapshot_file::write_snapshot(&tmp, &meta, &applier, None)?;
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let (shared, dir, slot) = (self.shared.clone(), self.dir.clone(), self.current.clone());
        let (file, current) = tokio::task::spawn_blocking(move || {
            StateMachineStore::build_blocking(&shared, &dir, &slot, |last| match last {
                Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
                None => format!("none-{seq}"),
            })
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        crate::metrics::metrics()
            .snapshots
            .with_label_values(&["built"])
            .inc();
        let data = SnapshotFile::new(tokio::fs::File::from_std(file), current.state_at)
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        tracing::info!(last = ?current.meta.last_log_id, "built snapshot");
        Ok(Snapshot {
            meta: current.meta,
            snapshot: Box::new(data),
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
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        if let (Some(durable), Some(newest)) = (&self.durable, entries.last()) {
            // The leader's own entries may be committed before they are on its disk.
            durable
                .wait_for(newest.log_id.index)
                .await
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        let commands = || {
            entries.iter().filter_map(|e| match &e.payload {
                EntryPayload::Normal(command) => Some(&command.op),
                _ => None,
            })
        };
        if commands().any(blobs::carries_blobs) {
            // Large blobs' bytes go to files before the state lists them, outside the lock
            // (a join reads its small pieces from the state or this batch).
            let inline = blobs::inline_pieces(&self.shared.read().state, commands());
            let (shared, ops) = (self.shared.clone(), commands().cloned().collect::<Vec<_>>());
            tokio::task::spawn_blocking(move || {
                ops.iter()
                    .try_for_each(|op| blobs::store_for(&shared.blobs, op, &inline))
            })
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))?
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        {
            let mut applier = self.shared.write();
            for entry in entries {
                applier.last_applied = Some(entry.log_id);
                last = Some(entry.log_id.index);
                out.push(match entry.payload {
                    EntryPayload::Blank => Applied::Nothing,
                    EntryPayload::Normal(command) => {
                        let applied = model::apply(&mut applier.state, &command);
                        blobs::after_apply(&self.shared.blobs, &command.op, &applier.state);
                        applied
                    }
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
            durable: self.durable.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<u64>> {
        let file = tokio::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(INCOMING))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let file = SnapshotFile::new(file, 0)
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<u64>> {
        // The chunks are all in (`snapshot.incoming`, flushed by the receiver).
        let (received, start) = snapshot.into_std().await;
        let dir = self.dir.clone();
        let meta_owned = meta.clone();
        let (shared, slot) = (self.shared.clone(), self.current.clone());
        let installed = tokio::task::spawn_blocking(move || {
            install_blocking(&dir, &shared.blobs, &slot, meta_owned, received, start)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let applier = installed.map_err(|e| {
            tracing::warn!("refused a snapshot from the leader: {e}");
            sm_err(ErrorVerb::Read, e)
        })?;
        let index = applier.last_applied.map_or(0, |l| l.index);
        *self.shared.write() = applier;
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
        let opened = self
            .open_current()
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let Some((current, file)) = opened else {
            return Ok(None);
        };
        let data = SnapshotFile::new(tokio::fs::File::from_std(file), current.state_at)
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: current.meta,
            snapshot: Box::new(data),
        }))
    }
}

/// Installs the state bytes received in `received` from `start` on (normally
/// `snapshot.incoming`): checks and decodes them (any readable format; a damaged or cut
/// transfer is refused here, before anything changes), writes them as the snapshot file of
/// the current format beside the current one (copied as they are when already in it) and
/// publishes it ([`publish`]).
fn install_blocking(
    dir: &Path,
    store: &BlobStore,
    slot: &Mutex<Option<Current>>,
    meta: SnapshotMeta<u64, BasicNode>,
    mut received: std::fs::File,
    start: u64,
) -> Result<Applier, std::io::Error> {
    let (mut applier, version) =
        snapshot_file::read_state(&mut received, start, "a snapshot received from the leader")?;
    if version >= STREAMED_SINCE {
        // The blobs first: the snapshot that lists them takes its place only once they are in.
        let at = snapshot_file::section_of(&mut received, start)?;
        super::blob_section::install(&mut received, at, store).map_err(std::io::Error::other)?;
    }
    let inline = applier.state.code.needs_move();
    blobs::move_to_files(store, &mut applier.state).map_err(std::io::Error::other)?;
    let tmp = dir.join(INSTALLING);
    if version == push_protocol::format::highest() && version >= STREAMED_SINCE && !inline {
        snapshot_file::write_snapshot_copying(&tmp, &meta, &mut received, start)?;
    } else {
        snapshot_file::write_snapshot(&tmp, &meta, &applier, Some(store))?;
    }
    drop(received);
    publish(slot, dir, &tmp, meta)?;
    match std::fs::remove_file(dir.join(INCOMING)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(applier)
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
