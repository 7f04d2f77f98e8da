//! The blob section of a snapshot's state bytes (format 4 on): the blob files the state lists
//! (blobs larger than `INLINE_MAX`; smaller ones are in the state's body), streamed from the
//! blob store after the body, so a follower or a late joiner that installs a snapshot gets
//! every blob with it.
//!
//! Layout (integers little-endian): `PUSHBLB\n`, the number of blobs (u64), then per blob its
//! hash (64 ASCII hex digits), its size (u64) and its bytes. Nothing follows. The section is
//! checked for shape (counts and sizes add up to the end) before a snapshot is installed, and
//! each blob against its hash as it is written to the receiver's blob store.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use super::blobs::{BlobError, BlobStore};
use crate::model::State;

/// Magic of the blob section.
pub const BLOB_MAGIC: [u8; 8] = *b"PUSHBLB\n";
/// Bytes of one blob's header in the section: hash, size.
const ENTRY_HEAD: usize = 64 + 8;
const BUFFER: usize = 1 << 20;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Writes the section of the blobs `state` lists, read from `store`, at `out`'s position. A
/// blob missing from this node's disk is left out (and logged): the receiver then lacks it
/// just as this node does. Returns the bytes written.
pub fn write(out: &mut File, state: &State, store: &BlobStore) -> io::Result<u64> {
    let listed = listed(state, store);
    let mut writer = BufWriter::with_capacity(BUFFER, &mut *out);
    let written = write_listed(&mut writer, &listed, store)?;
    writer.flush()?;
    Ok(written)
}

/// The blobs `state` lists as files (not those it holds itself: they travel in its body) that
/// are on this node's disk, with their sizes (one missing is logged: the receiver then lacks
/// it just as this node does). Taken under the state's lock; the blobs' bytes are written
/// afterwards with [`write_listed`] (blob files never change).
pub fn listed(state: &State, store: &BlobStore) -> Vec<(String, u64)> {
    let mut present = Vec::new();
    for (hash, size) in state.code.blob_sizes() {
        if state.code.inline_bytes(hash).is_some() {
            continue;
        }
        if store.has(hash) {
            present.push((hash.clone(), size));
        } else {
            tracing::error!(%hash, "a blob the state lists is not on this node's disk; the copy goes without it");
        }
    }
    present
}

/// Writes the section of the blobs `listed`, read from `store`, into `out`. Returns the bytes
/// written.
pub fn write_listed<W: Write>(
    out: &mut W,
    listed: &[(String, u64)],
    store: &BlobStore,
) -> io::Result<u64> {
    out.write_all(&BLOB_MAGIC)?;
    out.write_all(&(listed.len() as u64).to_le_bytes())?;
    let mut written = 16u64;
    for (hash, size) in listed {
        let size = *size;
        let mut file = store.open_blob(hash).map_err(io::Error::other)?;
        if file.metadata()?.len() != size {
            return Err(invalid(format!(
                "blob {hash} on this node's disk is not {size} bytes long; it is damaged"
            )));
        }
        out.write_all(hash.as_bytes())?;
        out.write_all(&size.to_le_bytes())?;
        let copied = io::copy(&mut (&mut file).take(size), out)?;
        if copied != size {
            return Err(invalid(format!("blob {hash} shrank while it was read")));
        }
        written += ENTRY_HEAD as u64 + size;
    }
    Ok(written)
}

/// Writes a section of no blobs (state bytes written without a blob store).
pub fn write_empty<W: Write>(out: &mut W) -> io::Result<u64> {
    out.write_all(&BLOB_MAGIC)?;
    out.write_all(&0u64.to_le_bytes())?;
    Ok(16)
}

/// One blob's place in a section.
struct Entry {
    hash: String,
    size: u64,
    at: u64,
}

/// Walks the section from `at` to the end of `file` without reading the blobs' bytes:
/// where each one is. The error says where the section stops adding up.
fn entries<R: Read + Seek>(file: &mut R, at: u64) -> io::Result<Vec<Entry>> {
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(at))?;
    let mut head = [0u8; 16];
    if end < at + 16 {
        return Err(invalid(format!(
            "truncated after byte {end}: the blob section's header is cut"
        )));
    }
    file.read_exact(&mut head)?;
    if head[..8] != BLOB_MAGIC {
        return Err(invalid(format!(
            "no blob section at byte {at} (the state bytes end in something else)"
        )));
    }
    let count = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    let mut pos = at + 16;
    let mut out = Vec::new();
    let mut entry = [0u8; ENTRY_HEAD];
    for i in 0..count {
        if end < pos + ENTRY_HEAD as u64 {
            return Err(invalid(format!(
                "truncated after byte {end}: blob {} of {count} is cut in its header",
                i + 1
            )));
        }
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut entry)?;
        let hash = String::from_utf8_lossy(&entry[..64]).to_string();
        let size = u64::from_le_bytes(entry[64..].try_into().unwrap_or_default());
        let data = pos + ENTRY_HEAD as u64;
        if end < data.saturating_add(size) {
            return Err(invalid(format!(
                "truncated after byte {end}: blob {} of {count} ({hash}) is {size} bytes long, {} arrived",
                i + 1,
                end - data
            )));
        }
        out.push(Entry {
            hash,
            size,
            at: data,
        });
        pos = data + size;
    }
    if pos != end {
        return Err(invalid(format!(
            "trailing bytes after byte {pos}: the blob section ends there"
        )));
    }
    Ok(out)
}

/// Checks that the section at `at` runs exactly to the end of `file` (shape only).
pub fn check(file: &mut File, at: u64) -> io::Result<()> {
    entries(file, at).map(|_| ())
}

/// Writes every blob of the section at `at` that `store` lacks into it, each checked against
/// its hash. Returns how many were written.
pub fn install<R: Read + Seek>(
    file: &mut R,
    at: u64,
    store: &BlobStore,
) -> Result<usize, BlobError> {
    let io = |e: io::Error| BlobError::Io {
        hash: "(blob section)".into(),
        source: e,
    };
    let mut written = 0;
    for entry in entries(file, at).map_err(io)? {
        if store.has(&entry.hash) {
            continue;
        }
        file.seek(SeekFrom::Start(entry.at)).map_err(io)?;
        let mut reader = BufReader::with_capacity(BUFFER, (&mut *file).take(entry.size));
        store.write_from(&entry.hash, entry.size, &mut reader)?;
        written += 1;
    }
    Ok(written)
}

/// Puts the section's blobs into `state` itself (for a peer of a format before blob files).
pub fn inline(file: &mut File, at: u64, state: &mut State) -> io::Result<()> {
    for entry in entries(file, at)? {
        file.seek(SeekFrom::Start(entry.at))?;
        let mut bytes = Vec::with_capacity(entry.size as usize);
        (&mut *file).take(entry.size).read_to_end(&mut bytes)?;
        state
            .code
            .inline_blob(&entry.hash, push_protocol::ByteBuf::from(bytes));
    }
    Ok(())
}
