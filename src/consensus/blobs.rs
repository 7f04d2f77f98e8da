//! Blob contents on a node's disk: one file per blob larger than
//! [`crate::model::code_store::INLINE_MAX`] at `<state>/blobs/ab/HASH` (the first two hex
//! digits of its SHA-256 name a folder), written to a temporary name, fsynced and renamed, and
//! checked against the hash whenever it is read. The replicated state keeps such a blob's hash
//! and size only (smaller blobs stay inline in it, [`crate::model::CodeStore`]); the state
//! machine writes the bytes of the blob commands here as it applies them ([`store_for`]), and
//! snapshots carry the files ([`super::snapshot_file`]).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use std::collections::BTreeMap;

use push_protocol::ByteBuf;

use crate::model::code_store::{blob_hash, is_inline};
use crate::model::CommandOp;

/// Bytes read or written at once while streaming a blob.
const STEP: usize = 1 << 20;

/// Why a blob could not be read or written on this node.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "blob {hash} is not on this node's disk; the node may still be catching up, try again"
    )]
    Missing { hash: String },
    #[error("blob {hash} is damaged on this node's disk (its bytes hash to {found}); remove the node's data dir and re-add the node to get a clean copy")]
    Damaged { hash: String, found: String },
    #[error("the pieces uploaded for blob {hash} do not add up to it (they hash to {found})")]
    Mismatch { hash: String, found: String },
    #[error("blob {hash}: {source}")]
    Io { hash: String, source: io::Error },
}

fn io_err(hash: &str) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        hash: hash.to_string(),
        source,
    }
}

/// The blob files of one node.
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Whether `hash` looks like a blob address (so it can name a file).
fn is_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl BlobStore {
    /// The store in `dir`, created if needed; temporary files a crash left are removed.
    pub fn open(dir: &Path) -> io::Result<BlobStore> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                for inner in std::fs::read_dir(entry.path())? {
                    let inner = inner?;
                    if inner.file_name().to_string_lossy().ends_with(".tmp") {
                        std::fs::remove_file(inner.path())?;
                    }
                }
            }
        }
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Where blob `hash` lives (whether or not it is there).
    pub fn path(&self, hash: &str) -> PathBuf {
        let folder = if is_hash(hash) { &hash[..2] } else { "xx" };
        self.dir.join(folder).join(hash)
    }

    /// Whether blob `hash` is on disk (its bytes are checked when read).
    pub fn has(&self, hash: &str) -> bool {
        is_hash(hash) && self.path(hash).is_file()
    }

    /// Writes blob `hash` from `input` (exactly `size` bytes), checking the bytes against the
    /// hash before the file gets its name. Does nothing when the blob is already there.
    pub fn write_from(
        &self,
        hash: &str,
        size: u64,
        input: &mut impl Read,
    ) -> Result<(), BlobError> {
        self.write_file(hash, size, input, true)
    }

    /// Writes each of `blobs` that is not here yet, then makes them durable together: one
    /// `syncfs` of the blob folder's filesystem instead of two fsyncs per file (a deploy of
    /// 10,000 small modules uploads them in a few batches of thousands of blobs). Returns
    /// their hashes, in order.
    pub fn write_all<'a>(
        &self,
        blobs: impl IntoIterator<Item = &'a ByteBuf>,
    ) -> Result<Vec<String>, BlobError> {
        let mut hashes = Vec::new();
        let mut wrote = false;
        for blob in blobs {
            let hash = blob_hash(blob);
            let path = self.path(&hash);
            // A file of another length is what a crash before the sync left: write it again.
            let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.len() as u64);
            if !whole {
                let _ = std::fs::remove_file(&path);
                self.write_file(&hash, blob.len() as u64, &mut &blob[..], false)?;
                wrote = true;
            }
            hashes.push(hash);
        }
        if wrote {
            self.sync().map_err(|e| BlobError::Io {
                hash: "(a batch of blobs)".into(),
                source: e,
            })?;
        }
        Ok(hashes)
    }

    /// Makes every file written in the blob folder durable (its data and names).
    fn sync(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let dir = File::open(&self.dir)?;
        // SAFETY: syncfs(2) on a descriptor this function owns for the call's duration.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes blob `hash` from `input`; `durable`: fsync it and its folder before returning
    /// (else the caller syncs a batch with [`BlobStore::sync`]).
    fn write_file(
        &self,
        hash: &str,
        size: u64,
        input: &mut impl Read,
        durable: bool,
    ) -> Result<(), BlobError> {
        if !is_hash(hash) {
            return Err(BlobError::Damaged {
                hash: hash.to_string(),
                found: "a name that is not a SHA-256".into(),
            });
        }
        let path = self.path(hash);
        if path.is_file() {
            // Already here: consume the bytes so a stream stays aligned.
            io::copy(&mut input.take(size), &mut io::sink()).map_err(io_err(hash))?;
            return Ok(());
        }
        let folder = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&folder).map_err(io_err(hash))?;
        // Unique per write: the same blob may be written by two requests at once.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = folder.join(format!("{hash}.{n}.tmp"));
        let mut file = File::create(&tmp).map_err(io_err(hash))?;
        let mut hasher = Sha256::new();
        let mut left = size;
        let mut buf = vec![0u8; STEP.min(size as usize).max(1)];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = input.read(&mut buf[..want]).map_err(io_err(hash))?;
            if n == 0 {
                let _ = std::fs::remove_file(&tmp);
                return Err(BlobError::Io {
                    hash: hash.to_string(),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("cut short: {} of {size} bytes arrived", size - left),
                    ),
                });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io_err(hash))?;
            left -= n as u64;
        }
        let found = hex(&hasher.finalize());
        if found != hash {
            let _ = std::fs::remove_file(&tmp);
            return Err(BlobError::Damaged {
                hash: hash.to_string(),
                found,
            });
        }
        if !durable {
            drop(file);
            return std::fs::rename(&tmp, &path).map_err(io_err(hash));
        }
        file.sync_all().map_err(io_err(hash))?;
        std::fs::rename(&tmp, &path).map_err(io_err(hash))?;
        File::open(&folder)
            .and_then(|f| f.sync_all())
            .map_err(io_err(hash))
    }

    /// Writes `bytes` as a blob; returns its hash.
    pub fn write(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let hash = blob_hash(bytes);
        self.write_from(&hash, bytes.len() as u64, &mut &bytes[..])?;
        Ok(hash)
    }

    /// Writes blob `hash` as the concatenation of the blobs `pieces` (checked against the
    /// hash), each read from `inline` (pieces the state holds) or its file. Does nothing when
    /// it is already there.
    pub fn join(
        &self,
        hash: &str,
        size: u64,
        pieces: &[String],
        inline: &Inline,
    ) -> Result<(), BlobError> {
        if self.has(hash) {
            return Ok(());
        }
        let mut chain = self.pieces(pieces, inline)?;
        self.write_from(hash, size, &mut chain)
    }

    /// The blobs `pieces` one after the other, each from `inline` or its file.
    fn pieces<'a>(
        &self,
        pieces: &[String],
        inline: &'a Inline,
    ) -> Result<Box<dyn Read + 'a>, BlobError> {
        let mut chain: Box<dyn Read + 'a> = Box::new(io::empty());
        for piece in pieces {
            chain = match inline.get(piece) {
                Some(bytes) => Box::new(chain.chain(&bytes[..])),
                None => Box::new(chain.chain(self.open_blob(piece)?)),
            };
        }
        Ok(chain)
    }

    /// Opens blob `hash` for streaming (checked by the reader of the stream, or by
    /// [`BlobStore::verify`]).
    pub fn open_blob(&self, hash: &str) -> Result<File, BlobError> {
        File::open(self.path(hash)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BlobError::Missing {
                hash: hash.to_string(),
            },
            _ => io_err(hash)(e),
        })
    }

    /// At most `len` bytes of blob `hash` from byte `offset` (unchecked: the reader checks
    /// the whole file against its hash).
    pub fn read_part(&self, hash: &str, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
        if !is_hash(hash) {
            return Err(BlobError::Missing {
                hash: hash.to_string(),
            });
        }
        let mut file = self.open_blob(hash)?;
        file.seek(io::SeekFrom::Start(offset))
            .map_err(io_err(hash))?;
        let mut bytes = Vec::new();
        file.take(len)
            .read_to_end(&mut bytes)
            .map_err(io_err(hash))?;
        Ok(bytes)
    }

    /// The bytes of blob `hash`, checked against the hash.
    pub fn read(&self, hash: &str) -> Result<Vec<u8>, BlobError> {
        if !is_hash(hash) {
            return Err(BlobError::Missing {
                hash: hash.to_string(),
            });
        }
        let mut bytes = Vec::new();
        self.open_blob(hash)?
            .read_to_end(&mut bytes)
            .map_err(io_err(hash))?;
        let found = blob_hash(&bytes);
        if found != hash {
            return Err(BlobError::Damaged {
                hash: hash.to_string(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Checks blob `hash` against its hash by streaming it (no copy in memory).
    pub fn verify(&self, hash: &str) -> Result<(), BlobError> {
        let mut file = self.open_blob(hash)?;
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut HashWriter(&mut hasher)).map_err(io_err(hash))?;
        let found = hex(&hasher.finalize());
        if found != hash {
            return Err(BlobError::Damaged {
                hash: hash.to_string(),
                found,
            });
        }
        Ok(())
    }

    /// Removes blob `hash` (nothing when absent).
    pub fn remove(&self, hash: &str) -> io::Result<()> {
        if !is_hash(hash) {
            return Ok(());
        }
        match std::fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The hashes of every blob file here.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut hashes = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            for inner in std::fs::read_dir(entry.path())? {
                let name = inner?.file_name().to_string_lossy().to_string();
                if is_hash(&name) {
                    hashes.push(name);
                }
            }
        }
        hashes.sort();
        Ok(hashes)
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Blob bytes the state holds (small blobs), by hash: what a join reads its small pieces from.
pub type Inline = BTreeMap<String, ByteBuf>;

/// Checks that the blobs `pieces` (from `inline` or their files) add up to blob `hash` of
/// `size` bytes (reading them once, in order), before a `JoinBlob` is proposed.
pub fn check_join(
    store: &BlobStore,
    hash: &str,
    size: u64,
    pieces: &[String],
    inline: &Inline,
) -> Result<(), BlobError> {
    let mut hasher = Sha256::new();
    let total = io::copy(
        &mut store.pieces(pieces, inline)?,
        &mut HashWriter(&mut hasher),
    )
    .map_err(io_err(hash))?;
    let found = hex(&hasher.finalize());
    if found != hash || total != size {
        return Err(BlobError::Mismatch {
            hash: hash.to_string(),
            found: format!("{found}, {total} bytes"),
        });
    }
    Ok(())
}

/// The blobs of `blobs` that are files (larger than `INLINE_MAX`); the others stay inline in
/// the state and in the log.
pub fn large(blobs: &[ByteBuf]) -> impl Iterator<Item = &ByteBuf> {
    blobs.iter().filter(|b| !is_inline(b.len() as u64))
}

/// Whether a command carries blob bytes to write as files ([`store_for`]).
pub fn carries_blobs(op: &CommandOp) -> bool {
    match op {
        CommandOp::PutBlobs { blobs } => large(blobs).next().is_some(),
        CommandOp::JoinBlob { .. } => true,
        CommandOp::Batch(ops) => ops.iter().any(carries_blobs),
        CommandOp::Audited { op, .. } => carries_blobs(op),
        _ => false,
    }
}

/// Writes the blob bytes a command carries as files (the large blobs of `PutBlobs`, `JoinBlob`,
/// inside `Batch` or `Audited` too) to `store`, before the command is applied to the state; a
/// join reads its small pieces from `inline` ([`inline_pieces`]). A `JoinBlob` whose pieces
/// are not all here is left to the model, which refuses it the same way on every node.
pub fn store_for(store: &BlobStore, op: &CommandOp, inline: &Inline) -> Result<(), BlobError> {
    match op {
        CommandOp::PutBlobs { blobs } => store.write_all(large(blobs)).map(|_| ()),
        // Refused by the model: a blob that small is uploaded whole.
        CommandOp::JoinBlob { size, .. } if is_inline(*size) => Ok(()),
        CommandOp::JoinBlob { hash, size, pieces } => {
            match store.join(hash, *size, pieces, inline) {
                Ok(()) => Ok(()),
                // Refused by the model (a piece never uploaded, or not adding up).
                Err(BlobError::Missing { .. } | BlobError::Damaged { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        CommandOp::Batch(ops) => ops.iter().try_for_each(|op| store_for(store, op, inline)),
        CommandOp::Audited { op, .. } => store_for(store, op, inline),
        _ => Ok(()),
    }
}

/// The pieces of the `JoinBlob`s among `ops` that are small blobs: their bytes from the `state`
/// or from a `PutBlobs` among `ops` (applied before the join in the same batch). Empty, and
/// cheap, without a join.
pub fn inline_pieces<'a>(
    state: &crate::model::State,
    ops: impl Iterator<Item = &'a CommandOp> + Clone,
) -> Inline {
    fn joins<'a>(op: &'a CommandOp, out: &mut Vec<&'a String>) {
        match op {
            CommandOp::JoinBlob { pieces, .. } => out.extend(pieces),
            CommandOp::Batch(ops) => ops.iter().for_each(|op| joins(op, out)),
            CommandOp::Audited { op, .. } => joins(op, out),
            _ => {}
        }
    }
    fn puts<'a>(op: &'a CommandOp, out: &mut Vec<&'a ByteBuf>) {
        match op {
            CommandOp::PutBlobs { blobs } => {
                out.extend(blobs.iter().filter(|b| is_inline(b.len() as u64)))
            }
            CommandOp::Batch(ops) => ops.iter().for_each(|op| puts(op, out)),
            CommandOp::Audited { op, .. } => puts(op, out),
            _ => {}
        }
    }
    let mut wanted = Vec::new();
    ops.clone().for_each(|op| joins(op, &mut wanted));
    if wanted.is_empty() {
        return Inline::new();
    }
    let mut found = held_inline(state, wanted.iter().copied());
    let mut uploaded = Vec::new();
    ops.for_each(|op| puts(op, &mut uploaded));
    for blob in uploaded {
        let hash = blob_hash(blob);
        if wanted.contains(&&hash) {
            found.insert(hash, blob.clone());
        }
    }
    found
}

/// The bytes of those of `pieces` that `state` holds inline (small blobs).
pub fn held_inline<'a>(
    state: &crate::model::State,
    pieces: impl IntoIterator<Item = &'a String>,
) -> Inline {
    pieces
        .into_iter()
        .filter_map(|p| Some((p.clone(), state.code.inline_bytes(p)?.clone())))
        .collect()
}

/// After a `JoinBlob` was applied: a join the model refused leaves no joined file behind.
/// The pieces' files stay (the log entries that uploaded them still name them, and a replay
/// or a lagging follower reads them back from there); the state no longer lists them.
pub fn after_apply(store: &BlobStore, op: &CommandOp, state: &crate::model::State) {
    match op {
        CommandOp::JoinBlob { hash, .. }
            if !state.code.has_blob(hash) && store.has(hash) && store.verify(hash).is_err() =>
        {
            let _ = store.remove(hash);
        }
        CommandOp::Batch(ops) => ops.iter().for_each(|op| after_apply(store, op, state)),
        CommandOp::Audited { op, .. } => after_apply(store, op, state),
        _ => {}
    }
}

/// Moves the large blobs a state of formats 1 to 3 held in memory to files in `store`,
/// leaving the state with their hashes and sizes only (the small ones stay, sized).
pub fn move_to_files(store: &BlobStore, state: &mut crate::model::State) -> Result<(), BlobError> {
    for (hash, bytes) in state.code.take_large_blobs() {
        let written = store.write(&bytes)?;
        if written != hash {
            return Err(BlobError::Damaged {
                hash,
                found: written,
            });
        }
        state.code.record_blob(&hash, bytes.len() as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_written_whole_checked_and_joined() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.write(b"hello ").unwrap();
        let b = store.write(&[0u8, 255, 1]).unwrap();
        assert_eq!(store.read(&a).unwrap(), b"hello ");
        assert_eq!(store.list().unwrap().len(), 2);
        let whole: Vec<u8> = [&b"hello "[..], &[0u8, 255, 1]].concat();
        let hash = blob_hash(&whole);
        let none = Inline::new();
        store
            .join(&hash, 9, &[a.clone(), b.clone()], &none)
            .unwrap();
        assert_eq!(store.read(&hash).unwrap(), whole);
        // A piece the state holds is read from there.
        let tail = ByteBuf::from(b"!".to_vec());
        let inline = Inline::from([(blob_hash(&tail), tail)]);
        let longer = blob_hash(b"hello !");
        let parts = [a.clone(), blob_hash(b"!")];
        check_join(&store, &longer, 7, &parts, &inline).unwrap();
        assert!(check_join(&store, &longer, 7, &parts, &none).is_err());
        store.join(&longer, 7, &parts, &inline).unwrap();
        assert_eq!(store.read(&longer).unwrap(), b"hello !");

        // A wrong hash never gets a file; a damaged file is refused when read.
        let wrong = "0".repeat(64);
        let err = store.join(&wrong, 9, &[a.clone(), b], &none).unwrap_err();
        assert!(matches!(err, BlobError::Damaged { .. }), "{err}");
        assert!(!store.has(&wrong));
        std::fs::write(store.path(&a), b"HELLO ").unwrap();
        let err = store.read(&a).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert!(store.verify(&a).is_err());
        let err = store.read(&"1".repeat(64)).unwrap_err().to_string();
        assert!(err.contains("not on this node"), "{err}");
    }
}
