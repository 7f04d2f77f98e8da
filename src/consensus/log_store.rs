//! The durable Raft log: an append-only file of checksummed records plus an in-memory mirror.
//!
//! Why our own file rather than an embedded database: the log is written in one place, read
//! mostly from memory, and its one hard requirement is "fsync before acknowledging, and batch
//! fsyncs across concurrent writers". A single writer thread does exactly that — it drains
//! every pending record, writes them with one `write`, calls `fdatasync` once, moves the
//! durable index ([`super::durable`]), then completes all their callbacks — and torn tails are
//! detected by per-record CRCs and cut off at start. The one append reported before its sync is
//! the leader's own new entries (see [`super::durable`] for why that is safe).
//!
//! The file, its records and the writer thread are in [`super::log_file`]. A file of an older
//! format is rewritten in the current one when opened (`migrate`). When the file grows past
//! [`REWRITE_BYTES`] after purges, it is rewritten as a fresh compact file (write, fsync,
//! rename, fsync dir) at a moment when no record is queued, so the new file equals the durable
//! state exactly.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Read};
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use push_protocol::format as versions;

use super::blobs::BlobStore;
use super::durable::{self, DurableIndex, Effect};
use super::format::{self, LOG_MAGIC};
pub use super::log_file::REWRITE_BYTES;
use super::log_file::{
    effect_of, frame_record, migrate, needs_sync, open_for_writing, read_records, record_clone,
    run_writer, Done, Job, LogFile, Mem, Record, Shared, LOG_FILE,
};
use super::log_light;
use super::TypeConfig;

/// The log store; cheap to clone (it is also the log reader).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    /// Where the large blobs' bytes of `PutBlobs` entries go instead of the log (file and
    /// memory); without one, entries are kept whole.
    blobs: Option<BlobStore>,
    /// This node's id, when its own entries as leader are reported appended before their
    /// sync ([`durable`]); None: every append is reported after it.
    early_for: Option<u64>,
}

fn io_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageError::IO {
        source: StorageIOError::new(ErrorSubject::Logs, verb, AnyError::error(e.to_string())),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn or corrupt tail, and rewriting
    /// a file of an older format in the current one.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        Self::open_with_blobs(dir, None)
    }

    /// [`LogStore::open`], keeping the bytes of `PutBlobs` entries in `blobs` instead of the
    /// log, so neither the file nor its mirror in memory holds them.
    pub fn open_with_blobs(dir: &Path, blobs: Option<BlobStore>) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let (version, start) = format::version_of(&bytes, LOG_MAGIC, &path.display().to_string())?;
        let (mem, good, problem) = read_records(&bytes[start..], version);
        let good = start + good;
        if let Some(problem) = &problem {
            tracing::warn!(
                "raft log {}: {problem}; cutting {} trailing bytes (an interrupted write: nothing acknowledged is lost)",
                path.display(),
                bytes.len() - good
            );
        }
        let good = if bytes.is_empty() || version != versions::highest() {
            migrate(dir, &mem, version, !bytes.is_empty())?
        } else {
            good as u64
        };
        let file = open_for_writing(&path)?;
        // Past `good`: a torn record, or allocated space that may hold an unsynced record a
        // killed process left (never acknowledged). Either is cut off, so the zeros that end
        // the records after a restart are fresh.
        if file.metadata()?.len() != good {
            file.set_len(good)?;
        }
        // What was read back counts as on disk from now on: records a killed process left
        // in the page cache unsynced are made durable before anything relies on them.
        file.sync_all()?;
        tracing::info!(
            entries = mem.entries.len(),
            last = ?mem.last_log_id(),
            "opened raft log"
        );
        let (tx, rx) = mpsc::channel();
        let durable = DurableIndex::new(mem.last_log_id().map(|l| l.index));
        let shared = Arc::new(Shared {
            mem: Mutex::new(mem),
            file: Mutex::new(LogFile {
                dir: dir.to_path_buf(),
                file,
                len: good,
                allocated: Some(good),
                purged_since_rewrite: false,
            }),
            queued: AtomicUsize::new(0),
            tx: Mutex::new(tx),
            durable,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(weak, rx))?;
        let store = LogStore {
            shared,
            blobs,
            early_for: None,
        };
        if let Some(blobs) = &store.blobs {
            // Entries a file holds whole (written before blob files, or by an older format)
            // are kept light from now on.
            let mut mem = store.mem();
            let whole: Vec<Entry<TypeConfig>> = mem
                .entries
                .values()
                .filter(|e| !mem.light.contains_key(&e.log_id.index) && log_light::carries_blobs(e))
                .map(|e| Entry::clone(e))
                .collect();
            let (light, refs) = log_light::lighten(blobs, whole)?;
            for e in light {
                mem.entries.insert(e.log_id.index, Arc::new(e));
            }
            mem.light.extend(refs);
        }
        Ok(store)
    }

    /// Reports node `id`'s own appends as leader before their sync, so replication starts
    /// in parallel with it ([`durable`]); the state machine must then wait for
    /// [`LogStore::durable`] before applying, and the commit index sent to followers must
    /// be cut by [`LogStore::commit_on_disk`].
    pub fn early_for(mut self, id: u64) -> LogStore {
        self.early_for = Some(id);
        self
    }

    /// The last index on disk.
    pub fn durable(&self) -> DurableIndex {
        self.shared.durable.clone()
    }

    /// `committed` cut to the last entry on disk here: what a leader may tell followers.
    pub fn commit_on_disk(&self, committed: Option<LogId<u64>>) -> Option<LogId<u64>> {
        let on_disk = self.shared.durable.last();
        match committed {
            Some(c) if on_disk < Some(c.index) => {
                let mem = self.mem();
                on_disk.and_then(|d| {
                    mem.entries
                        .get(&d)
                        .map(|e| e.log_id)
                        .or(mem.purged.filter(|p| p.index == d))
                })
            }
            other => other,
        }
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        self.shared
            .mem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the mirror and queues the record under one lock, so queue order is change order.
    fn submit(
        &self,
        record: Record,
        done: Option<Done>,
        change: impl FnOnce(&mut Mem),
    ) -> io::Result<()> {
        let bytes = frame_record(&record)?;
        let purge = matches!(record, Record::Purge(_));
        let sync = needs_sync(&record);
        let effect = effect_of(&record);
        let mut mem = self.mem();
        change(&mut mem);
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        let sent = self
            .shared
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Job {
                bytes,
                done,
                purge,
                sync,
                effect,
            });
        drop(mem);
        sent.map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "raft log writer stopped"))
    }

    /// Waits until `record` is durable.
    async fn submit_and_wait(
        &self,
        record: Record,
        change: impl FnOnce(&mut Mem),
    ) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(record, Some(Done::Notify(tx)), change)?;
        rx.await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "raft log writer stopped"))?
    }
}

impl LogStore {
    /// Appends and waits for durability (tests; openraft uses the callback form).
    #[cfg(test)]
    pub(crate) async fn append_and_wait(&self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        let mirror = entries.clone();
        self.submit_and_wait(Record::Append(entries), move |m| {
            for e in mirror {
                m.entries.insert(e.log_id.index, Arc::new(e));
            }
        })
        .await
    }
}

/// The last committed index openraft saved in this process (for `/metrics`).
static COMMITTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The committed index last saved by this process's log store (None before any).
pub fn committed_index() -> Option<u64> {
    match COMMITTED.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        i => Some(i),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let (mut entries, refs) = {
            let mem = self.mem();
            let entries: Vec<_> = mem
                .entries
                .range(range.clone())
                .map(|(_, e)| Entry::clone(e))
                .collect();
            let refs: BTreeMap<u64, Vec<String>> = mem
                .light
                .range(range)
                .map(|(i, h)| (*i, h.clone()))
                .collect();
            (entries, refs)
        };
        if let (Some(store), false) = (&self.blobs, refs.is_empty()) {
            log_light::rehydrate(store, &mut entries, &refs)
                .map_err(|e| io_err(ErrorVerb::Read, e))?;
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let mem = self.mem();
        Ok(LogState {
            last_purged_log_id: mem.purged,
            last_log_id: mem.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let v = *vote;
        self.submit_and_wait(Record::Vote(v), |m| m.vote = Some(v))
            .await
            .map_err(|e| io_err(ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.mem().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let index = committed.map_or(0, |c| c.index);
        COMMITTED.store(index, std::sync::atomic::Ordering::Relaxed);
        let record = Record::Committed(committed);
        let bytes = frame_record(&record).map_err(|e| io_err(ErrorVerb::Write, e))?;
        let change = |m: &mut Mem| m.committed = committed;
        if let Some(result) = LogFile::write_now(&self.shared, &bytes, Effect::None, false, change)
        {
            return result.map_err(|e| io_err(ErrorVerb::Write, e));
        }
        self.submit(record, None, change)
            .map_err(|e| io_err(ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.mem().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        // Only into an idle writer: under load, a leader held by its sync gathers the writes
        // arriving meanwhile into its next append (fewer fsyncs; going early there too cost
        // ~10% of the 64-client throughput on one shared disk, measured).
        let early = self.shared.queued.load(Ordering::SeqCst) == 0
            && self
                .early_for
                .is_some_and(|me| durable::leaders_own(me, self.mem().vote, &entries));
        let heavy = entries.iter().any(log_light::carries_blobs);
        let record = match (&self.blobs, heavy) {
            (Some(store), true) => {
                // The blob files first (synced), then the record that refers to them.
                let store = store.clone();
                let (entries, refs) =
                    tokio::task::spawn_blocking(move || log_light::lighten(&store, entries))
                        .await
                        .map_err(|e| io_err(ErrorVerb::Write, e))?
                        .map_err(|e| io_err(ErrorVerb::Write, e))?;
                if refs.is_empty() {
                    Record::Append(entries)
                } else {
                    Record::AppendLight { entries, refs }
                }
            }
            _ => Record::Append(entries),
        };
        let mut mirror = record_clone(&record);
        if !early {
            // Written here if the writer is idle: a follower's append (`LogFile::write_now`).
            let bytes = frame_record(&record).map_err(|e| io_err(ErrorVerb::Write, e))?;
            let change = |m: &mut Mem| {
                if let Some(mirror) = mirror.take() {
                    m.replay(mirror)
                }
            };
            if let Some(result) =
                LogFile::write_now(&self.shared, &bytes, effect_of(&record), true, change)
            {
                callback
                    .log_io_completed(result.map_err(|e| io::Error::new(e.kind(), e.to_string())));
                return Ok(());
            }
        }
        let (done, now) = if early {
            (None, Some(callback))
        } else {
            (Some(Done::Flushed(callback)), None)
        };
        self.submit(record, done, move |m| {
            if let Some(mirror) = mirror {
                m.replay(mirror)
            }
        })
        .map_err(|e| io_err(ErrorVerb::Write, e))?;
        if let Some(callback) = now {
            // Queued in order behind everything before it; the writer syncs it next.
            callback.log_io_completed(Ok(()));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.submit(Record::Truncate(log_id.index), None, |m| {
            m.replay(Record::Truncate(log_id.index))
        })
        .map_err(|e| io_err(ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.submit(Record::Purge(log_id), None, |m| {
            m.replay(Record::Purge(log_id))
        })
        .map_err(|e| io_err(ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
