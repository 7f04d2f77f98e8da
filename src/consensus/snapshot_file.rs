//! The snapshot file and a snapshot's state bytes, written and read as streams: the state is
//! encoded straight into the file through a buffered writer with its CRC-32 computed as it
//! goes, and decoded from a buffered reader, so neither side ever holds the encoded state in
//! memory (a big state costs its own size once, not two or three times).
//!
//! Layout from format 4 (older formats are read whole, as they were written — see
//! ARCHITECTURE.md "Formats and versions"):
//! - state bytes: `PUSHSTA\n`, the format (u32 LE), the body's length (u64 LE), the body's
//!   CRC-32 (u32 LE), then the body (the postcard encoding of the applied state), then the
//!   blob section: the blob files the state lists ([`super::blob_section`]);
//! - snapshot file: `PUSHSNP\n`, the format (u32 LE), the length of the meta (u64 LE), the
//!   meta (postcard), then the state bytes to the end of the file.
//!
//! The state bytes are the snapshot file's tail, and they are what a follower is sent:
//! [`SnapshotFile`] is a file seen from the start of its state bytes. A snapshot file is
//! only ever written beside the real one and renamed over it after an fsync, so a kill -9
//! leaves the previous snapshot or the new one. The body is checked (length, then CRC) before
//! anything of it is decoded, so a truncated or corrupt transfer is refused whole.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use openraft::{BasicNode, LogId, SnapshotMeta, StoredMembership};
use push_protocol::format;
use push_protocol::frame::MAX_PEER_FRAME;

use super::blobs::BlobStore;
use super::format::{FormatError, HEADER_LEN, SNAPSHOT_MAGIC, STATE_MAGIC};
use crate::model::State;

/// The applied state: what a snapshot holds, and what the state machine shares with readers.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Applier {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    pub state: State,
}

/// The first format whose files have this streamed layout.
pub const STREAMED_SINCE: u32 = 4;

/// Bytes of a streamed state header: magic, format, body length, CRC-32.
pub const STATE_HEADER_LEN: u64 = HEADER_LEN as u64 + 12;

/// Buffer of the writers and readers of big files.
const BUFFER: usize = 1 << 20;

type Meta = SnapshotMeta<u64, BasicNode>;

/// The snapshot file of formats 1 to 3: the meta and the state bytes as one value.
#[derive(serde::Serialize, serde::Deserialize)]
struct OldLayout {
    meta: Meta,
    data: Vec<u8>,
}

fn corrupt(what: &str, reason: impl Into<String>) -> FormatError {
    FormatError::Corrupt {
        what: what.to_string(),
        reason: reason.into(),
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Counts and checksums what passes through to the writer below.
struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `applier` as state bytes of format `version` at `file`'s position, streamed when the
/// format has the streamed layout, the blob files from `store` after the body (none without a
/// store). Returns how many bytes were written.
pub fn write_state(
    file: &mut File,
    version: u32,
    applier: &Applier,
    store: Option<&BlobStore>,
) -> io::Result<u64> {
    let start = file.stream_position()?;
    let mut header = STATE_MAGIC.to_vec();
    header.extend_from_slice(&version.to_le_bytes());
    if version < STREAMED_SINCE {
        // The layout of formats 2 and 3: header and body, no length or checksum.
        file.write_all(&header)?;
        let body = format::encode(version, applier).map_err(invalid)?;
        file.write_all(&body)?;
        return Ok((header.len() + body.len()) as u64);
    }
    header.extend_from_slice(&[0; 12]);
    file.write_all(&header)?;
    let sink = Crc {
        inner: &mut *file,
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    let writer = format::encode_into(version, applier, BufWriter::with_capacity(BUFFER, sink))
        .map_err(invalid)?;
    let sink = writer.into_inner().map_err(|e| e.into_error())?;
    let (len, crc) = (sink.len, sink.crc.finalize());
    file.seek(SeekFrom::Start(start + HEADER_LEN as u64))?;
    file.write_all(&len.to_le_bytes())?;
    file.write_all(&crc.to_le_bytes())?;
    file.seek(SeekFrom::End(0))?;
    let section = match store {
        Some(store) => super::blob_section::write(file, &applier.state, store)?,
        None => super::blob_section::write_empty(file)?,
    };
    Ok(STATE_HEADER_LEN + len + section)
}

/// Checks the state bytes starting at `start` in `file` and running to its end, reading them
/// once without decoding: the header, then (streamed layout) the length and the CRC-32 of the
/// body and the shape of the blob section after it.
/// Returns their format and the body's length (0 for older formats, which carry neither and
/// are checked by decoding).
pub fn check_state(file: &mut File, start: u64, what: &str) -> Result<(u32, u64), FormatError> {
    let io = |e: io::Error| corrupt(what, e.to_string());
    let end = file.seek(SeekFrom::End(0)).map_err(io)?;
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut head = [0u8; STATE_HEADER_LEN as usize];
    let have = end.saturating_sub(start).min(STATE_HEADER_LEN) as usize;
    file.read_exact(&mut head[..have]).map_err(io)?;
    let (version, _) = super::format::version_of(&head[..have], STATE_MAGIC, what)?;
    if version < STREAMED_SINCE {
        return Ok((version, 0));
    }
    if have < STATE_HEADER_LEN as usize {
        return Err(corrupt(what, format!("torn header ({have} bytes)")));
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&head[HEADER_LEN..HEADER_LEN + 8]);
    let len = u64::from_le_bytes(word);
    let crc = u32::from_le_bytes([head[20], head[21], head[22], head[23]]);
    let body = end - start - STATE_HEADER_LEN;
    if body < len {
        return Err(corrupt(
            what,
            format!(
                "truncated after byte {}: the state is {len} bytes long, {body} arrived",
                start + STATE_HEADER_LEN + body
            ),
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; BUFFER];
    let mut body = (&mut *file).take(len);
    loop {
        let n = body.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let found = hasher.finalize();
    if found != crc {
        return Err(corrupt(
            what,
            format!("checksum mismatch (CRC-32 {found:08x}, the header says {crc:08x}): the bytes were damaged"),
        ));
    }
    super::blob_section::check(file, section_at(start, len)).map_err(io)?;
    Ok((version, len))
}

/// Where the blob section starts in the streamed state bytes at `start` in `file` (read from
/// their header).
pub fn section_of(file: &mut File, start: u64) -> io::Result<u64> {
    let mut head = [0u8; STATE_HEADER_LEN as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut head)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(&head[HEADER_LEN..HEADER_LEN + 8]);
    Ok(section_at(start, u64::from_le_bytes(word)))
}

/// Where the blob section starts in state bytes at `start` whose body is `len` bytes long.
pub fn section_at(start: u64, len: u64) -> u64 {
    start + STATE_HEADER_LEN + len
}

/// Reads state bytes starting at `start` in `file` and running to its end: checks them
/// whole first ([`check_state`]), then decodes from a buffered reader. Older formats are
/// read whole. Returns the state and the format it was in.
pub fn read_state(file: &mut File, start: u64, what: &str) -> Result<(Applier, u32), FormatError> {
    let io = |e: io::Error| corrupt(what, e.to_string());
    let (version, len) = check_state(file, start, what)?;
    if version < STREAMED_SINCE {
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        return super::format::decode_file(&bytes, STATE_MAGIC, what);
    }
    file.seek(SeekFrom::Start(start + STATE_HEADER_LEN))
        .map_err(io)?;
    let reader = BufReader::with_capacity(BUFFER, (&mut *file).take(len));
    // Zeroed pages are only touched as far as the longest string needs.
    let mut scratch = vec![0u8; MAX_PEER_FRAME];
    let (applier, mut rest) = format::decode_from::<Applier, _>(version, reader, &mut scratch)
        .map_err(|e| corrupt(what, format!("undecodable in format {version}: {e}")))?;
    let mut extra = [0u8; 1];
    if rest.read(&mut extra).map_err(io)? != 0 {
        return Err(corrupt(what, "bytes left after the state's body"));
    }
    Ok((applier, version))
}

/// Writes a whole snapshot file (`meta`, then `applier`'s state bytes with the blob files of
/// `store`) of the current format to `path`, fsynced. The caller renames it into place.
pub fn write_snapshot(
    path: &Path,
    meta: &Meta,
    applier: &Applier,
    store: Option<&BlobStore>,
) -> io::Result<()> {
    let version = format::highest();
    let mut file = File::create(path)?;
    if version < STREAMED_SINCE {
        // Formats 1 to 3: the meta and the state bytes as one value.
        let old = OldLayout {
            meta: meta.clone(),
            data: super::format::encode_state(applier)?,
        };
        file.write_all(&super::format::encode_file(SNAPSHOT_MAGIC, &old)?)?;
    } else {
        write_snapshot_head(&mut file, meta)?;
        write_state(&mut file, version, applier, store)?;
    }
    file.sync_all()
}

/// Writes the header and meta of a streamed snapshot file; the state bytes follow.
fn write_snapshot_head(file: &mut File, meta: &Meta) -> io::Result<()> {
    let meta = format::encode(format::highest(), meta).map_err(invalid)?;
    file.write_all(&super::format::header(SNAPSHOT_MAGIC))?;
    file.write_all(&(meta.len() as u64).to_le_bytes())?;
    file.write_all(&meta)
}

/// Writes a snapshot file of `meta` whose state bytes are copied, as they are, from
/// `state` at `start` on (already checked, in the current format), fsynced.
pub fn write_snapshot_copying(
    path: &Path,
    meta: &Meta,
    state: &mut File,
    start: u64,
) -> io::Result<()> {
    let mut file = File::create(path)?;
    write_snapshot_head(&mut file, meta)?;
    state.seek(SeekFrom::Start(start))?;
    io::copy(state, &mut file)?;
    file.sync_all()
}

/// A snapshot file as read: its meta, the state, the format it is in and where its state
/// bytes start.
pub struct Loaded {
    pub meta: Meta,
    pub applier: Applier,
    pub version: u32,
    pub state_at: u64,
}

/// Reads the snapshot file at `path` (any readable format).
pub fn read_snapshot(path: &Path) -> Result<Loaded, FormatError> {
    let what = path.display().to_string();
    let io = |e: io::Error| corrupt(&what, e.to_string());
    let mut file = File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let (version, _) = super::format::version_of(&head, SNAPSHOT_MAGIC, &what)?;
    if version < STREAMED_SINCE {
        // Formats 1 to 3: one value holding the meta and the state bytes, read whole.
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (stored, version): (OldLayout, u32) =
            super::format::decode_file(&bytes, SNAPSHOT_MAGIC, &what)?;
        let OldLayout { meta, data } = stored;
        let applier: Applier = super::format::decode_state(&data, &what)?;
        // The state bytes are the file's tail: what precedes them is the header (none in
        // format 1), the meta and the bytes' length.
        let state_at = (bytes.len() - data.len()) as u64;
        return Ok(Loaded {
            meta,
            applier,
            version,
            state_at,
        });
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map_err(io)?.len();
    if len > size {
        return Err(corrupt(&what, format!("torn meta ({len} bytes announced)")));
    }
    let mut meta = vec![0u8; len as usize];
    file.read_exact(&mut meta).map_err(io)?;
    let meta: Meta = format::decode(version, &meta)
        .map_err(|e| corrupt(&what, format!("undecodable meta in format {version}: {e}")))?;
    let state_at = HEADER_LEN as u64 + 8 + len;
    let (applier, _) = read_state(&mut file, state_at, &what)?;
    Ok(Loaded {
        meta,
        applier,
        version,
        state_at,
    })
}

/// A file seen from byte `base` on: the snapshot data openraft reads chunks from (a snapshot
/// file from its state bytes) and writes received chunks into (a fresh file, `base` 0).
pub struct SnapshotFile {
    file: tokio::fs::File,
    base: u64,
}

impl SnapshotFile {
    /// `file` seen from `base`, positioned there.
    pub async fn new(mut file: tokio::fs::File, base: u64) -> io::Result<SnapshotFile> {
        use tokio::io::AsyncSeekExt;
        file.seek(SeekFrom::Start(base)).await?;
        Ok(SnapshotFile { file, base })
    }
}

impl SnapshotFile {
    /// Empties the file (a sender starting over).
    pub async fn clear(&mut self) -> io::Result<()> {
        use tokio::io::AsyncSeekExt;
        self.file.set_len(self.base).await?;
        self.file.seek(SeekFrom::Start(self.base)).await?;
        Ok(())
    }

    /// The file, for blocking reads, and where the state bytes start in it.
    pub async fn into_std(self) -> (File, u64) {
        (self.file.into_std().await, self.base)
    }

    /// Checks the state bytes written so far ([`check_state`]; bytes of a format before
    /// the streamed layout are decoded), off the async threads.
    pub async fn check(&mut self, what: &str) -> Result<(), FormatError> {
        use tokio::io::AsyncWriteExt;
        let fail = |e: io::Error| corrupt(what, e.to_string());
        self.file.flush().await.map_err(fail)?;
        let mut file = self.file.try_clone().await.map_err(fail)?.into_std().await;
        let (base, what) = (self.base, what.to_string());
        tokio::task::spawn_blocking(move || {
            let (version, _) = check_state(&mut file, base, &what)?;
            if version < STREAMED_SINCE {
                // Older formats carry no length or checksum: only decoding checks them.
                read_state(&mut file, base, &what)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| corrupt("a received snapshot", e.to_string()))?
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let position = match position {
            SeekFrom::Start(n) => SeekFrom::Start(self.base + n),
            other => other,
        };
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let base = self.base;
        Pin::new(&mut self.file)
            .poll_complete(cx)
            .map(|r| r.map(|at| at.saturating_sub(base)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn sample() -> (Meta, Applier) {
        let mut state = State::default();
        let v = push_protocol::Value::Str("x".repeat(100));
        for i in 0..2000 {
            crate::model::apply(
                &mut state,
                &crate::model::Command {
                    time_ms: 1,
                    op: crate::model::CommandOp::KvSet {
                        map: "m".into(),
                        key: format!("k{i}"),
                        value: v.clone(),
                    },
                },
            );
        }
        let meta = Meta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "t-1".into(),
        };
        let applier = Applier {
            state,
            ..Applier::default()
        };
        (meta, applier)
    }

    #[test]
    fn a_snapshot_file_round_trips_and_its_tail_is_the_state_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        let (meta, applier) = sample();
        write_snapshot(&path, &meta, &applier, None).unwrap();
        let loaded = read_snapshot(&path).unwrap();
        assert_eq!(loaded.meta, meta);
        assert_eq!(loaded.version, format::FORMAT_VERSION);
        assert_eq!(
            format::encode(4, &loaded.applier.state).unwrap(),
            format::encode(4, &applier.state).unwrap()
        );
        // The tail alone, as a follower receives it, reads the same.
        let bytes = std::fs::read(&path).unwrap();
        let tail = dir.path().join("incoming");
        std::fs::write(&tail, &bytes[loaded.state_at as usize..]).unwrap();
        let (again, _) = read_state(&mut File::open(&tail).unwrap(), 0, "tail").unwrap();
        assert_eq!(
            format::encode(4, &again.state).unwrap(),
            format::encode(4, &applier.state).unwrap()
        );
    }

    #[test]
    fn truncated_or_damaged_state_bytes_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        let (meta, applier) = sample();
        write_snapshot(&path, &meta, &applier, None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let at = read_snapshot(&path).unwrap().state_at as usize;
        let tail = &bytes[at..];
        let incoming = dir.path().join("incoming");

        std::fs::write(&incoming, &tail[..tail.len() - 1000]).unwrap();
        let err = read_state(
            &mut File::open(&incoming).unwrap(),
            0,
            "a received snapshot",
        )
        .expect_err("truncated")
        .to_string();
        assert!(
            err.starts_with("a received snapshot: truncated after byte")
                && err.contains(&format!("the state is {} bytes long", tail.len() - 24 - 16)),
            "{err}"
        );

        let mut damaged = tail.to_vec();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x40;
        std::fs::write(&incoming, &damaged).unwrap();
        let err = read_state(
            &mut File::open(&incoming).unwrap(),
            0,
            "a received snapshot",
        )
        .expect_err("damaged")
        .to_string();
        assert!(err.contains("checksum mismatch"), "{err}");

        std::fs::write(&incoming, &tail[..10]).unwrap();
        let err = read_state(&mut File::open(&incoming).unwrap(), 0, "x")
            .expect_err("torn")
            .to_string();
        assert!(err.contains("torn header"), "{err}");
    }

    /// Received bytes without a header read as format 1, which has no checksum: the
    /// receiver's check decodes them, so garbage is refused as a failed transfer (sent
    /// again) rather than failing the install.
    #[tokio::test]
    async fn received_bytes_of_no_known_layout_fail_the_check() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let file = tokio::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("incoming"))
            .await
            .unwrap();
        let mut received = SnapshotFile::new(file, 0).await.unwrap();
        received.write_all(&[46; 300]).await.unwrap();
        let err = received.check("the sent one").await.unwrap_err();
        assert!(err.to_string().starts_with("the sent one"), "{err}");
    }
}
