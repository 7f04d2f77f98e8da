//! The Raft log's file: its records, their framing (`[u32 LE length][u32 LE crc32][Record]`
//! after a header of `super::format`: magic and format version), their replay into the
//! in-memory mirror ([`Mem`]), the compact image a migration or a rewrite writes, and the one
//! writer thread ([`Writer`]) that drains every pending record, writes them with one `write`,
//! calls `fdatasync` once, moves the durable index ([`super::durable`]), then completes their
//! callbacks. Replaying the records in order rebuilds the log; every record is idempotent; a
//! torn or corrupt tail is detected by the per-record CRCs and cut off. The file is extended
//! ahead of its records ([`PREALLOCATE`]): a record written into space already allocated costs
//! an `fdatasync` no file-size change, which on ext4 is ~0.08 of its ~0.2 ms; the zeros past
//! the last record read as its end. [`super::log_store`] is the openraft storage built on it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::LogFlushed;
use openraft::{Entry, LogId, Vote};
use push_protocol::format as versions;
use serde::{Deserialize, Serialize};

use super::durable::{DurableIndex, Effect};
use super::format::{self, LOG_MAGIC};
use super::TypeConfig;

/// Rewrite the file once it is this large and something has been purged since the last time.
pub const REWRITE_BYTES: u64 = 32 << 20;

pub(super) const LOG_FILE: &str = "raft.log";

/// How far ahead of its records the file is allocated, in one `fallocate`. The space past the
/// last record reads as zeros, which [`read_records`] takes as the end (no record is empty),
/// and opening cuts it off before allocating afresh, so nothing stale past it survives.
pub const PREALLOCATE: u64 = 8 << 20;

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
pub(super) struct Mem {
    pub(super) vote: Option<Vote<u64>>,
    pub(super) committed: Option<LogId<u64>>,
    pub(super) purged: Option<LogId<u64>>,
    /// Shared, so that compaction copies the mirror in microseconds under its lock.
    pub(super) entries: BTreeMap<u64, Arc<Entry<TypeConfig>>>,
    /// The entries held without their blob bytes: index -> hashes of the blobs to read back.
    pub(super) light: BTreeMap<u64, Vec<String>>,
}

impl Mem {
    pub(super) fn replay(&mut self, record: Record) {
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

    pub(super) fn last_log_id(&self) -> Option<LogId<u64>> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.purged)
    }
}

pub(super) enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Notify(tokio::sync::oneshot::Sender<io::Result<()>>),
}

pub(super) struct Job {
    pub(super) bytes: Vec<u8>,
    pub(super) done: Option<Done>,
    pub(super) purge: bool,
    /// Whether the record must be on disk before the batch completes (see [`needs_sync`]).
    pub(super) sync: bool,
    /// What the record does to the durable index once synced.
    pub(super) effect: Effect,
}

/// What `record` does to the durable index.
pub(super) fn effect_of(record: &Record) -> Effect {
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
pub(super) fn needs_sync(record: &Record) -> bool {
    !matches!(record, Record::Committed(_))
}

pub(super) struct Shared {
    pub(super) mem: Mutex<Mem>,
    /// The file; taken in this order: `file`, then `mem`.
    pub(super) file: Mutex<LogFile>,
    /// Jobs sent to the writer and not yet written; a rewrite waits for zero.
    pub(super) queued: AtomicUsize,
    pub(super) tx: Mutex<mpsc::Sender<Job>>,
    /// The last index on disk ([`durable`]).
    pub(super) durable: DurableIndex,
}

pub(super) fn frame_record(record: &Record) -> io::Result<Vec<u8>> {
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
pub(super) fn read_records(bytes: &[u8], version: u32) -> (Mem, usize, Option<String>) {
    let mut mem = Mem::default();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + 8) else {
            if bytes[pos..].iter().all(|b| *b == 0) {
                break; // the allocated space past the last record
            }
            return (mem, pos, Some(format!("torn record header at byte {pos}")));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 && crc == 0 {
            break; // the allocated space past the last record ([`PREALLOCATE`])
        }
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

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A copy of an append record, for the mirror.
pub(super) fn record_clone(record: &Record) -> Option<Record> {
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
pub(super) fn image(mem: &Mem) -> io::Result<Vec<u8>> {
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
pub(super) fn migrate(dir: &Path, mem: &Mem, from: u32, existed: bool) -> io::Result<u64> {
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

/// The file as written: shared by the writer thread and an append written in its caller's
/// thread ([`LogFile::write_now`]); whoever holds it writes.
pub(super) struct LogFile {
    pub(super) dir: PathBuf,
    /// Opened for writing at `len`, not for appending: past `len` lies allocated space.
    pub(super) file: File,
    /// Where the records end.
    pub(super) len: u64,
    /// Where the allocated space ends; `None` once the file system refused to allocate ahead
    /// (records are then appended, each sync also saving the new size).
    pub(super) allocated: Option<u64>,
    pub(super) purged_since_rewrite: bool,
}

/// Opens the log file at `path` for [`LogFile`]: for writing at a position, created if absent.
pub(super) fn open_for_writing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// The writer thread: drains every queued job, writes them as one batch, completes them.
/// Ends when the store (the channel's sender, in [`Shared`]) is gone.
pub(super) fn run_writer(shared: std::sync::Weak<Shared>, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(job) = rx.try_recv() {
            jobs.push(job);
        }
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.bytes.len()).sum());
        for job in &jobs {
            buf.extend_from_slice(&job.bytes);
        }
        let mut file = strong.file.lock().unwrap_or_else(|p| p.into_inner());
        file.purged_since_rewrite |= jobs.iter().any(|j| j.purge);
        let sync = jobs.iter().any(|j| j.sync);
        let result = file.write_batch(&buf, sync, jobs.len());
        match &result {
            Ok(()) if sync => strong.durable.synced(jobs.iter().map(|j| j.effect)),
            Err(_) => strong.durable.failed(),
            _ => {}
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
        strong.queued.fetch_sub(count, Ordering::SeqCst);
        if let Err(e) = result {
            tracing::error!("raft log write failed: {e}; the node stops accepting writes");
            continue;
        }
        if file.purged_since_rewrite && file.len > REWRITE_BYTES {
            if let Err(e) = file.rewrite(&strong) {
                tracing::warn!("raft log compaction failed (will retry later): {e}");
            }
        }
    }
}

impl LogFile {
    /// Writes one record (and syncs it, if `sync`) in the caller's thread, when nothing is
    /// queued for the writer thread and it is not writing: `change` is made to the mirror
    /// under its lock as [`super::log_store`]'s submit does, and a synced record's durable
    /// index moves before this returns. Returns `None` (nothing done) when the writer is
    /// busy: the caller queues instead.
    ///
    /// A follower's append is the case: openraft's core waits for its flush before it
    /// answers the leader, and the leader sends the next entries only after that answer, so
    /// there is nothing to batch with. Writing here saves two thread hand-offs per write
    /// (to the writer thread and back to the core), ~0.05 ms each on 2 busy cores. The
    /// committed index, saved by every node on every commit, is the other: unsynced, it is
    /// one `write` that needed a wake-up of the writer thread.
    pub(super) fn write_now(
        shared: &Shared,
        bytes: &[u8],
        effect: Effect,
        sync: bool,
        change: impl FnOnce(&mut Mem),
    ) -> Option<io::Result<()>> {
        let mut file = shared.file.try_lock().ok()?;
        {
            let mut mem = shared.mem.lock().unwrap_or_else(|p| p.into_inner());
            // Under the mirror's lock, as submits count themselves: zero means nothing is
            // queued or being written, and whatever is submitted from now on is written
            // after this (the writer thread needs `file`, held here).
            if shared.queued.load(Ordering::SeqCst) != 0 {
                return None;
            }
            change(&mut mem);
        }
        let result = file.write_batch(bytes, sync, 1);
        match &result {
            Ok(()) if sync => shared.durable.synced(std::iter::once(effect)),
            Ok(()) => {}
            Err(e) => {
                tracing::error!("raft log write failed: {e}; the node stops accepting writes");
                shared.durable.failed();
            }
        }
        Some(result)
    }

    /// Makes sure the file is allocated up to `end` at least, [`PREALLOCATE`] at a time.
    fn reserve(&mut self, end: u64) {
        let Some(allocated) = self.allocated else {
            return;
        };
        if end <= allocated {
            return;
        }
        let target = end.div_ceil(PREALLOCATE) * PREALLOCATE + PREALLOCATE;
        let (Ok(offset), Ok(len)) = (i64::try_from(allocated), i64::try_from(target - allocated))
        else {
            self.allocated = None;
            return;
        };
        // SAFETY: `fallocate` only reads its integer arguments; the descriptor is this
        // log's open file.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, offset, len) };
        if rc == 0 {
            self.allocated = Some(target);
        } else {
            let e = io::Error::last_os_error();
            tracing::info!("raft log: the file system does not allocate ahead ({e}); appending");
            self.allocated = None;
        }
    }

    /// Writes `records` framed records as one `write` at the end of the records, then one
    /// `fdatasync` if `sync`.
    fn write_batch(&mut self, buf: &[u8], sync: bool, records: usize) -> io::Result<()> {
        let started = std::time::Instant::now();
        self.reserve(self.len + buf.len() as u64);
        self.file.write_all_at(buf, self.len)?;
        self.len += buf.len() as u64;
        if !sync {
            return Ok(());
        }
        let result = self.file.sync_data();
        let m = crate::metrics::metrics();
        m.log_fsync_seconds.observe(started.elapsed().as_secs_f64());
        m.log_fsync_records.inc_by(records as u64);
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
        self.file = open_for_writing(&self.dir.join(LOG_FILE))?;
        tracing::info!(from = self.len, to = buf.len(), "compacted raft log");
        self.len = buf.len() as u64;
        if self.allocated.is_some() {
            self.allocated = Some(self.len);
        }
        self.purged_since_rewrite = false;
        Ok(())
    }
}
