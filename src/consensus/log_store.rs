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
//! File format: a header (`super::format`: magic and format version), then a sequence of
//! `[u32 LE length][u32 LE crc32][Record]`, the record in the file's format. Replaying the
//! records in order rebuilds the log; every record is idempotent. A file of an older format
//! is rewritten in the current one when opened (`migrate`). When the file grows past
//! [`REWRITE_BYTES`] after purges, it is rewritten as a fresh compact file (write, fsync,
//! rename, fsync dir) at a moment when no record is queued, so the new file equals the durable
//! state exactly.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use push_protocol::format as versions;
use serde::{Deserialize, Serialize};

use super::blobs::BlobStore;
use super::durable::{self, DurableIndex, Effect};
use super::format::{self, LOG_MAGIC};
use super::log_light;
use super::TypeConfig;

/// Rewrite the file once it is this large and something has been purged since the last time.
pub const REWRITE_BYTES: u64 = 32 << 20;

const LOG_FILE: &str = "raft.log";

#[derive(Serialize, Deserialize)]
pub(super) enum Record {
    Vote(Vote<u64>),
    Committed(Option<LogId<u64>>),
    Append(Vec<Entry<TypeConfig>>),
    /// Remove entries at and after this index.
    Truncate(u64),
    /// Remove entries up to and including this log id.
    Purge(LogId<u64>),
    /// Entries whose large blobs' bytes were left out (format 4): each `PutBlobs` listed in
    /// `refs` (index, those blobs' hashes) carries here only its blobs of at most
    /// `INLINE_MAX` bytes (none before small blobs stayed inline); the others are blob files,
    /// written and synced before this record ([`super::blobs`]).
    AppendLight {
        entries: Vec<Entry<TypeConfig>>,
        refs: Vec<(u64, Vec<String>)>,
    },
}

/// What the log holds; the mirror of the file.
#[derive(Default)]
struct Mem {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    purged: Option<LogId<u64>>,
    /// Shared, so that compaction copies the mirror in microseconds under its lock.
    entries: BTreeMap<u64, Arc<Entry<TypeConfig>>>,
    /// The entries held without their blob bytes: index -> hashes of the blobs to read back.
    light: BTreeMap<u64, Vec<String>>,
}

impl Mem {
    fn replay(&mut self, record: Record) {
        match record {
            Record::Vote(v) => self.vote = Some(v),
            Record::Committed(c) => self.committed = c,
            Record::Append(entries) => {
                for e in entries {
                    self.light.remove(&e.log_id.index);
                    self.entries.insert(e.log_id.index, Arc::new(e));
                }
            }
            Record::AppendLight { entries, refs } => {
                for e in entries {
                    self.light.remove(&e.log_id.index);
                    self.entries.insert(e.log_id.index, Arc::new(e));
                }
                self.light.extend(refs);
            }
            Record::Truncate(index) => {
                self.entries.split_off(&index);
                self.light.split_off(&index);
            }
            Record::Purge(log_id) => {
                let keep = self.entries.split_off(&(log_id.index + 1));
                self.entries = keep;
                self.light = self.light.split_off(&(log_id.index + 1));
                if self.purged.is_none_or(|p| p < log_id) {
                    self.purged = Some(log_id);
                }
            }
        }
    }

    fn last_log_id(&self) -> Option<LogId<u64>> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.purged)
    }
}

enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Notify(tokio::sync::oneshot::Sender<io::Result<()>>),
}

struct Job {
    bytes: Vec<u8>,
    done: Option<Done>,
    purge: bool,
    /// Whether the record must be on disk before the batch completes (see [`needs_sync`]).
    sync: bool,
    /// What the record does to the durable index once synced.
    effect: Effect,
}

/// What `record` does to the durable index.
fn effect_of(record: &Record) -> Effect {
    match record {
        Record::Append(entries) | Record::AppendLight { entries, .. } => entries
            .last()
            .map_or(Effect::None, |e| Effect::Appended(e.log_id.index)),
        Record::Truncate(index) => Effect::Truncated(*index),
        _ => Effect::None,
    }
}

/// Whether `record` needs an `fdatasync` of its own.
///
/// The committed index need not be durable: Raft recovers it from a quorum, so a lost one only
/// means re-learning it from the leader. It is still written (to the page cache, so it
/// survives a process kill) and becomes durable with the next synced batch. It is written at
/// once, not held for the next batch: a restarted leader serves linearizable reads from the
/// committed index it reads back, and one that lagged let such a read miss entries
/// acknowledged before the restart. Records are read back in order and a torn one cuts off
/// everything after it, so a committed index is only ever seen together with the entries
/// written before it.
fn needs_sync(record: &Record) -> bool {
    !matches!(record, Record::Committed(_))
}

struct Shared {
    mem: Mutex<Mem>,
    /// Jobs sent to the writer and not yet written; a rewrite waits for zero.
    queued: AtomicUsize,
    tx: Mutex<mpsc::Sender<Job>>,
    /// The last index on disk ([`durable`]).
    durable: DurableIndex,
}

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

fn frame_record(record: &Record) -> io::Result<Vec<u8>> {
    let body = versions::encode(versions::highest(), record)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads every intact record (each in format `version`); returns the state and the length of
/// the intact prefix.
fn read_records(bytes: &[u8], version: u32) -> (Mem, usize, Option<String>) {
    let mut mem = Mem::default();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + 8) else {
            return (mem, pos, Some(format!("torn record header at byte {pos}")));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            return (
                mem,
                pos,
                Some(format!("torn record at byte {pos} ({len} bytes declared)")),
            );
        };
        if crc32fast::hash(body) != crc {
            return (mem, pos, Some(format!("checksum mismatch at byte {pos}")));
        }
        match versions::decode::<Record>(version, body) {
            Ok(record) => mem.replay(record),
            Err(e) => {
                return (
                    mem,
                    pos,
                    Some(format!("undecodable record at byte {pos}: {e}")),
                )
            }
        }
        pos += 8 + len;
    }
    (mem, pos, None)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if problem.is_some() && version == versions::highest() {
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
            queued: AtomicUsize::new(0),
            tx: Mutex::new(tx),
            durable,
        });
        let writer = Writer {
            shared: Arc::downgrade(&shared),
            dir: dir.to_path_buf(),
            file,
            len: good,
            purged_since_rewrite: false,
        };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))?;
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

/// A copy of an append record, for the mirror.
fn record_clone(record: &Record) -> Option<Record> {
    match record {
        Record::Append(entries) => Some(Record::Append(entries.clone())),
        Record::AppendLight { entries, refs } => Some(Record::AppendLight {
            entries: entries.clone(),
            refs: refs.clone(),
        }),
        _ => None,
    }
}

/// The whole log as a fresh file in the current format: header, vote, committed, purged,
/// entries in batches.
fn image(mem: &Mem) -> io::Result<Vec<u8>> {
    let mut buf = format::header(LOG_MAGIC);
    if let Some(v) = mem.vote {
        buf.extend(frame_record(&Record::Vote(v))?);
    }
    buf.extend(frame_record(&Record::Committed(mem.committed))?);
    if let Some(p) = mem.purged {
        buf.extend(frame_record(&Record::Purge(p))?);
    }
    let entries: Vec<_> = mem.entries.values().map(|e| Entry::clone(e)).collect();
    for chunk in entries.chunks(256) {
        let refs: Vec<(u64, Vec<String>)> = chunk
            .iter()
            .filter_map(|e| {
                let index = e.log_id.index;
                mem.light.get(&index).map(|h| (index, h.clone()))
            })
            .collect();
        let record = if refs.is_empty() {
            Record::Append(chunk.to_vec())
        } else {
            Record::AppendLight {
                entries: chunk.to_vec(),
                refs,
            }
        };
        buf.extend(frame_record(&record)?);
    }
    Ok(buf)
}

/// Writes the log read from a file of format `from` (or a new, empty one) as a file of the
/// current format, crash-safely; returns its length.
fn migrate(dir: &Path, mem: &Mem, from: u32, existed: bool) -> io::Result<u64> {
    let image = image(mem)?;
    format::replace_file(dir, LOG_FILE, &image)?;
    if existed {
        tracing::info!(
            from,
            to = versions::highest(),
            entries = mem.entries.len(),
            "migrated the raft log to the current format"
        );
    }
    Ok(image.len() as u64)
}

struct Writer {
    shared: std::sync::Weak<Shared>,
    dir: PathBuf,
    file: File,
    len: u64,
    purged_since_rewrite: bool,
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

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while let Ok(job) = rx.try_recv() {
                jobs.push(job);
            }
            let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.bytes.len()).sum());
            for job in &jobs {
                buf.extend_from_slice(&job.bytes);
                self.purged_since_rewrite |= job.purge;
            }
            let result = self.write_batch(&buf, &jobs);
            let durable = self.shared.upgrade().map(|s| s.durable.clone());
            match (&result, durable) {
                (Ok(()), Some(durable)) if jobs.iter().any(|j| j.sync) => {
                    durable.synced(jobs.iter().map(|j| j.effect))
                }
                (Err(_), Some(durable)) => durable.failed(),
                _ => {}
            }
            if result.is_ok() {
                self.len += buf.len() as u64;
            }
            let count = jobs.len();
            for job in jobs {
                let outcome = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                match job.done {
                    Some(Done::Flushed(cb)) => cb.log_io_completed(outcome),
                    Some(Done::Notify(tx)) => {
                        let _ = tx.send(outcome);
                    }
                    None => {}
                }
            }
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            shared.queued.fetch_sub(count, Ordering::SeqCst);
            if let Err(e) = result {
                tracing::error!("raft log write failed: {e}; the node stops accepting writes");
                continue;
            }
            if self.purged_since_rewrite && self.len > REWRITE_BYTES {
                if let Err(e) = self.rewrite(&shared) {
                    tracing::warn!("raft log compaction failed (will retry later): {e}");
                }
            }
        }
    }

    /// Writes one batch with one `write`, then one `fdatasync` if any record in it needs one.
    fn write_batch(&mut self, buf: &[u8], jobs: &[Job]) -> io::Result<()> {
        let started = std::time::Instant::now();
        self.file.write_all(buf)?;
        if !jobs.iter().any(|j| j.sync) {
            return Ok(());
        }
        let result = self.file.sync_data();
        let m = crate::metrics::metrics();
        m.log_fsync_seconds.observe(started.elapsed().as_secs_f64());
        m.log_fsync_records.inc_by(jobs.len() as u64);
        result
    }

    /// Writes the mirror as a fresh file, when nothing is queued (mirror == durable state).
    ///
    /// Only the copy of the mirror (shared entries) is taken under its lock. Copying, encoding
    /// and fsyncing tens of MB under it stalled every reader and appender for hundreds of ms — openraft's core among
    /// them, whose heartbeats then stopped long enough for a follower to call an election.
    /// Records queued meanwhile wait for this thread and go into the new file after it.
    fn rewrite(&mut self, shared: &Shared) -> io::Result<()> {
        let copy = {
            let mem = shared.mem.lock().unwrap_or_else(|p| p.into_inner());
            if shared.queued.load(Ordering::SeqCst) != 0 {
                return Ok(());
            }
            Mem {
                vote: mem.vote,
                committed: mem.committed,
                purged: mem.purged,
                entries: mem.entries.clone(),
                light: mem.light.clone(),
            }
        };
        let buf = image(&copy)?;
        drop(copy);
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(&buf)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        tracing::info!(from = self.len, to = buf.len(), "compacted raft log");
        self.len = buf.len() as u64;
        self.purged_since_rewrite = false;
        Ok(())
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
        self.submit(Record::Committed(committed), None, |m| {
            m.committed = committed
        })
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
        let mirror = record_clone(&record);
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
