//! The backup file (`push backup FILE`, `push restore FILE`): its layout, a writer that
//! checks what the node sent, and a reader that verifies every byte and says at which offset
//! a damaged file goes wrong.
//!
//! Layout (integers little-endian):
//!
//! | offset | bytes | what |
//! |---|---|---|
//! | 0 | 8 | magic `PUSHBAK\n` |
//! | 8 | 4 | format of the state bytes (u32) |
//! | 12 | 8 | log index the state was applied at |
//! | 20 | 8 | term of that entry |
//! | 28 | 8 | length of the state bytes |
//! | 36 | 4 | CRC32 of bytes 0..36 |
//! | 40 | … | chunks: u32 length (> 0), u32 CRC32 of the chunk, the chunk's bytes |
//! | | 4 + 32 | end: a zero length, then the SHA-256 of all state bytes |
//!
//! The state bytes concatenated are a [`BackupState`] in that format, from format 4 on
//! followed by the blob section of the blob files the state lists (the layout snapshots use,
//! `consensus::blob_section`). Nothing may follow the end. A truncated file, a flipped bit,
//! a file of a newer format or not a backup at all is refused with the byte offset where it
//! went wrong ([`BackupError`]).

use std::io::{self, Read, Write};

use push_protocol::format::{self, VersionError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::State;

/// Magic of a backup file.
pub const BACKUP_MAGIC: [u8; 8] = *b"PUSHBAK\n";
/// Bytes of the header, its CRC included.
pub const HEADER_LEN: u64 = 40;
/// The largest chunk a reader accepts (writers use smaller ones).
pub const MAX_CHUNK: u32 = 16 << 20;

/// What a backup holds: the replicated state as applied at log `index` (its registry
/// liveness is cleared at restore: a restored cluster hears from its own nodes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupState {
    pub index: u64,
    pub term: u64,
    pub state: State,
}

/// The fixed fields of a backup file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupHeader {
    pub format: u32,
    pub index: u64,
    pub term: u64,
    pub bytes: u64,
}

/// Why a backup cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a Push backup: it does not start with the backup magic (byte offset 0); pass a file `push backup` wrote")]
    NotABackup,
    #[error("{0}")]
    Version(#[from] VersionError),
    #[error("the backup is truncated: it ends at byte offset {offset}, inside {inside}; the copy is incomplete — use a complete one")]
    Truncated { offset: u64, inside: String },
    #[error("the backup is corrupted at byte offset {offset}: {reason}; use an undamaged copy")]
    Corrupt { offset: u64, reason: String },
    #[error("the backup's state cannot be decoded in format {format}: {reason}")]
    Undecodable { format: u32, reason: String },
}

fn header_bytes(h: &BackupHeader) -> Vec<u8> {
    let mut out = BACKUP_MAGIC.to_vec();
    out.extend_from_slice(&h.format.to_le_bytes());
    out.extend_from_slice(&h.index.to_le_bytes());
    out.extend_from_slice(&h.term.to_le_bytes());
    out.extend_from_slice(&h.bytes.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Writes a backup file as its state bytes arrive, hashing them; [`BackupWriter::finish`]
/// checks the count and the sender's hash before writing the end.
pub struct BackupWriter<W: Write> {
    out: W,
    header: BackupHeader,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> BackupWriter<W> {
    pub fn new(mut out: W, header: BackupHeader) -> Result<Self, BackupError> {
        out.write_all(&header_bytes(&header))?;
        Ok(BackupWriter {
            out,
            header,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// State bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends one chunk of state bytes.
    pub fn chunk(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l <= MAX_CHUNK)
            .ok_or_else(|| corrupt(self.written, "a chunk over 16 MiB"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&crc32fast::hash(bytes).to_le_bytes())?;
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the end after checking that the node sent what it announced: `sha256` (hex)
    /// over exactly `header.bytes` bytes. Returns the writer (flushed).
    pub fn finish(mut self, sha256: &str) -> Result<W, BackupError> {
        let digest = self.hasher.finalize();
        if self.written != self.header.bytes || hex(&digest) != sha256 {
            return Err(corrupt(
                self.written,
                &format!(
                    "the node announced {} bytes with SHA-256 {sha256}, {} bytes with SHA-256 {} arrived",
                    self.header.bytes,
                    self.written,
                    hex(&digest)
                ),
            ));
        }
        self.out.write_all(&0u32.to_le_bytes())?;
        self.out.write_all(&digest)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn corrupt(offset: u64, reason: &str) -> BackupError {
    BackupError::Corrupt {
        offset,
        reason: reason.to_string(),
    }
}

/// Reads exactly `buf.len()` bytes at `*offset`, or says the file ends inside `inside`.
fn read_exact(
    input: &mut impl Read,
    buf: &mut [u8],
    offset: &mut u64,
    inside: &str,
) -> Result<(), BackupError> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(BackupError::Truncated {
                    offset: *offset + got as u64,
                    inside: inside.to_string(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    *offset += got as u64;
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Reads and checks the header only.
pub fn read_header(input: &mut impl Read) -> Result<BackupHeader, BackupError> {
    let mut head = [0u8; HEADER_LEN as usize];
    let mut offset = 0;
    // A file shorter than the magic that is not a prefix of it is not a backup at all.
    if let Err(e) = read_exact(input, &mut head, &mut offset, "the header") {
        if let BackupError::Truncated { offset, .. } = &e {
            let n = *offset as usize;
            if head[..n.min(8)] != BACKUP_MAGIC[..n.min(8)] {
                return Err(BackupError::NotABackup);
            }
        }
        return Err(e);
    }
    if head[..8] != BACKUP_MAGIC {
        return Err(BackupError::NotABackup);
    }
    let header = BackupHeader {
        format: u32_at(&head, 8),
        index: u64_at(&head, 12),
        term: u64_at(&head, 20),
        bytes: u64_at(&head, 28),
    };
    if crc32fast::hash(&head[..36]) != u32_at(&head, 36) {
        return Err(corrupt(0, "the header's checksum does not match"));
    }
    format::check("the backup", header.format)?;
    Ok(header)
}

/// Reads a whole backup, checking every chunk, the count and the hash, and that nothing
/// follows the end. Returns the header and the state bytes.
pub fn read_backup(input: &mut impl Read) -> Result<(BackupHeader, Vec<u8>), BackupError> {
    let header = read_header(input)?;
    let mut offset = HEADER_LEN;
    let mut body = Vec::with_capacity(header.bytes.min(1 << 30) as usize);
    let mut hasher = Sha256::new();
    loop {
        let at = offset;
        let mut head = [0u8; 4];
        read_exact(input, &mut head, &mut offset, "a chunk's length")?;
        let len = u32::from_le_bytes(head);
        if len == 0 {
            break;
        }
        if len > MAX_CHUNK || body.len() as u64 + u64::from(len) > header.bytes {
            return Err(corrupt(
                at,
                &format!(
                    "a chunk of {len} bytes does not fit the {} bytes the header announces",
                    header.bytes
                ),
            ));
        }
        read_exact(input, &mut head, &mut offset, "a chunk's checksum")?;
        let crc = u32::from_le_bytes(head);
        let start = body.len();
        body.resize(start + len as usize, 0);
        read_exact(
            input,
            &mut body[start..],
            &mut offset,
            &format!("the chunk that starts at byte offset {at}"),
        )?;
        if crc32fast::hash(&body[start..]) != crc {
            return Err(corrupt(
                at,
                &format!("the chunk of {len} bytes that starts here fails its checksum"),
            ));
        }
        hasher.update(&body[start..]);
    }
    let end = offset - 4;
    if body.len() as u64 != header.bytes {
        return Err(corrupt(
            end,
            &format!(
                "the chunks hold {} bytes, the header announces {}",
                body.len(),
                header.bytes
            ),
        ));
    }
    let mut digest = [0u8; 32];
    read_exact(input, &mut digest, &mut offset, "the final SHA-256")?;
    if hasher.finalize()[..] != digest {
        return Err(corrupt(end + 4, "the SHA-256 of the state does not match"));
    }
    let mut extra = [0u8; 1];
    if input.read(&mut extra)? != 0 {
        return Err(corrupt(offset, "bytes follow the end of the backup"));
    }
    Ok((header, body))
}

/// Decodes the state bytes of a checked backup: the state, and (format 4 on) the blob
/// section that follows it (empty before format 4), checked by whoever installs it.
pub fn decode<'a>(
    header: &BackupHeader,
    body: &'a [u8],
) -> Result<(BackupState, &'a [u8]), BackupError> {
    let undecodable = |reason: String| BackupError::Undecodable {
        format: header.format,
        reason,
    };
    if header.format < 4 {
        let state = format::decode(header.format, body).map_err(|e| undecodable(e.to_string()))?;
        return Ok((state, &[]));
    }
    let (state, blobs) =
        format::decode_prefix(header.format, body).map_err(|e| undecodable(e.to_string()))?;
    if blobs.is_empty() {
        return Err(undecodable(
            "the state bytes end without their blob section; the backup was cut when it was written".into(),
        ));
    }
    Ok((state, blobs))
}

/// [`BackupState`] by reference, serialized field for field the same way, so a node encodes
/// its live state without copying it.
#[derive(Serialize)]
struct BackupStateRef<'a> {
    index: u64,
    term: u64,
    state: &'a State,
}

/// Where a backup's state bytes go as they are made: counts and hashes (SHA-256) them on
/// their way to the writer below.
pub struct StateSink<W: Write> {
    inner: io::BufWriter<W>,
    sha: Sha256,
    len: u64,
}

impl<W: Write> StateSink<W> {
    pub fn new(out: W) -> StateSink<W> {
        StateSink {
            inner: io::BufWriter::with_capacity(1 << 16, out),
            sha: Sha256::new(),
            len: 0,
        }
    }

    /// Flushes; returns how many bytes passed and their SHA-256 (hex).
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        self.inner.flush()?;
        Ok((self.len, hex(&self.sha.finalize())))
    }
}

impl<W: Write> Write for StateSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encodes `state` (as applied at `index` of `term`) for a backup in the current format into
/// `sink` as it goes, never holding the bytes in memory. The blob section follows it
/// (`blob_section::write_listed` into the same sink).
pub fn encode_state_into<W: Write>(
    index: u64,
    term: u64,
    state: &State,
    sink: &mut StateSink<W>,
) -> Result<(), BackupError> {
    let value = BackupStateRef { index, term, state };
    format::encode_into(format::FORMAT_VERSION, &value, sink).map_err(|e| {
        BackupError::Undecodable {
            format: format::FORMAT_VERSION,
            reason: e.to_string(),
        }
    })?;
    Ok(())
}

/// Encodes the state bytes of a backup of `backup` in the current format, with an empty blob
/// section (a state that lists no blob files).
pub fn encode(backup: &BackupState) -> Result<Vec<u8>, BackupError> {
    let mut bytes =
        format::encode(format::FORMAT_VERSION, backup).map_err(|e| BackupError::Undecodable {
            format: format::FORMAT_VERSION,
            reason: e.to_string(),
        })?;
    super::blob_section::write_empty(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let header = BackupHeader {
            format: format::FORMAT_VERSION,
            index: 42,
            term: 3,
            bytes: body.len() as u64,
        };
        let mut w = BackupWriter::new(Vec::new(), header).unwrap();
        for piece in body.chunks(4096) {
            w.chunk(piece).unwrap();
        }
        let sha = hex(&Sha256::digest(&body));
        w.finish(&sha).unwrap()
    }

    #[test]
    fn a_streamed_encoding_is_the_same_bytes_as_the_whole_one() {
        let mut state = State::default();
        state
            .kv
            .set("m", "k", push_protocol::Value::Str("v".repeat(300)));
        let whole = encode(&BackupState {
            index: 7,
            term: 2,
            state: state.clone(),
        })
        .unwrap();
        let mut streamed = Vec::new();
        let mut sink = StateSink::new(&mut streamed);
        encode_state_into(7, 2, &state, &mut sink).unwrap();
        super::super::blob_section::write_empty(&mut sink).unwrap();
        let (len, sha) = sink.finish().unwrap();
        assert_eq!(streamed, whole);
        assert_eq!(len, whole.len() as u64);
        assert_eq!(sha, hex(&Sha256::digest(&whole)));
    }

    #[test]
    fn a_written_backup_reads_back() {
        let file = sample();
        let (header, body) = read_backup(&mut file.as_slice()).unwrap();
        assert_eq!((header.index, header.term, header.bytes), (42, 3, 10_000));
        assert_eq!(body[300], (300 % 251) as u8);
    }

    #[test]
    fn every_truncation_is_refused_with_its_offset() {
        let file = sample();
        for cut in [
            0,
            5,
            8,
            39,
            40,
            43,
            47,
            100,
            4096 + 48,
            file.len() - 33,
            file.len() - 1,
        ] {
            let err = read_backup(&mut &file[..cut]).unwrap_err();
            match (&err, cut) {
                (BackupError::NotABackup, 0) => {}
                (BackupError::Truncated { offset, .. }, _) => assert_eq!(*offset, cut as u64),
                _ => panic!("cut at {cut}: {err}"),
            }
        }
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let file = sample();
        for at in (0..file.len()).step_by(97).chain([file.len() - 1]) {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            let err = read_backup(&mut bad.as_slice());
            assert!(err.is_err(), "a flip at {at} went unnoticed");
        }
        // A flip inside the second chunk's bytes names that chunk's offset.
        let mut bad = file.clone();
        let second = HEADER_LEN as usize + 8 + 4096;
        bad[second + 8 + 10] ^= 1;
        let err = read_backup(&mut bad.as_slice()).unwrap_err().to_string();
        assert!(err.contains(&format!("byte offset {second}")), "{err}");
    }

    #[test]
    fn wrong_magic_newer_format_and_trailing_bytes_are_refused() {
        let file = sample();
        let err = read_backup(&mut &b"PUSHSNP\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[..]);
        assert!(matches!(err, Err(BackupError::NotABackup)));

        let mut newer = file.clone();
        newer[8..12].copy_from_slice(&(format::FORMAT_VERSION + 1).to_le_bytes());
        let crc = crc32fast::hash(&newer[..36]);
        newer[36..40].copy_from_slice(&crc.to_le_bytes());
        let err = read_backup(&mut newer.as_slice()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("format {}", format::FORMAT_VERSION + 1)),
            "{err}"
        );

        let mut longer = file.clone();
        longer.push(0);
        let err = read_backup(&mut longer.as_slice()).unwrap_err().to_string();
        assert!(err.contains(&format!("offset {}", file.len())), "{err}");
    }

    #[test]
    fn a_stream_that_differs_from_what_the_node_announced_is_not_finished() {
        let header = BackupHeader {
            format: format::FORMAT_VERSION,
            index: 1,
            term: 1,
            bytes: 10,
        };
        let mut w = BackupWriter::new(Vec::new(), header).unwrap();
        w.chunk(b"12345").unwrap();
        assert!(w.finish(&hex(&Sha256::digest(b"12345"))).is_err());
    }
}
