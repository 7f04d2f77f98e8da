//! Storage formats: the one place that knows how the raft log and snapshot files say which
//! format they are in, reads each version, and replaces a file crash-safely when migrating.
//!
//! The version numbers are the release's ([`push_protocol::format`]); this module adds the
//! file side. From format 2 on, every file starts with a 12-byte header: 8 magic bytes naming
//! the kind of file, then the format as a little-endian u32. Format 1 files have no header
//! (a format-1 log starts with a record length, a snapshot with an `Option` tag, never with
//! a magic), are bincode, and are rewritten in the current format the first time a node opens
//! them ([`replace_file`]: write beside, fsync, rename, fsync the directory — a crash at any
//! point leaves either the old file or the new one, both readable).
//!
//! A file in a format newer than this release is refused before anything in the data
//! directory is touched ([`check_data_dir`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use push_protocol::format::{self, VersionError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Magic of the raft log file (`log/raft.log`).
pub const LOG_MAGIC: [u8; 8] = *b"PUSHLOG\n";
/// Magic of the snapshot file (`state/snapshot.bin`).
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PUSHSNP\n";
/// Magic of a snapshot's state bytes (inside the snapshot file and in snapshot installs).
pub const STATE_MAGIC: [u8; 8] = *b"PUSHSTA\n";

/// Bytes of a header: magic then the format as u32 LE.
pub const HEADER_LEN: usize = 12;

/// The files of a data directory, relative to it, with their magic.
pub const FILES: [(&str, [u8; 8]); 2] = [
    ("log/raft.log", LOG_MAGIC),
    ("state/snapshot.bin", SNAPSHOT_MAGIC),
];

/// Why stored bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Version(#[from] VersionError),
    #[error("{what}: {reason}")]
    Corrupt { what: String, reason: String },
}

impl From<FormatError> for io::Error {
    fn from(e: FormatError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

/// The header of a file in the current format.
pub fn header(magic: [u8; 8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&format::highest().to_le_bytes());
    out
}

/// The format of `bytes` (the contents of `what`) and where the body starts: a header's
/// version, or 1 for bytes without one.
pub fn version_of(bytes: &[u8], magic: [u8; 8], what: &str) -> Result<(u32, usize), FormatError> {
    if !bytes.starts_with(&magic) {
        return Ok((1, 0));
    }
    let Some(version) = bytes.get(8..HEADER_LEN) else {
        return Err(FormatError::Corrupt {
            what: what.to_string(),
            reason: format!("torn header ({} bytes)", bytes.len()),
        });
    };
    let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
    Ok((format::check(what, version)?, HEADER_LEN))
}

/// Refuses a data directory holding a file of a newer (or unknown older) format, reading
/// only the headers, before anything is opened or migrated.
pub fn check_data_dir(dir: &Path) -> Result<(), io::Error> {
    for (name, magic) in FILES {
        let path = dir.join(name);
        let mut head = Vec::with_capacity(HEADER_LEN);
        match File::open(&path) {
            Ok(f) => {
                f.take(HEADER_LEN as u64).read_to_end(&mut head)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if head.len() == HEADER_LEN || !head.starts_with(&magic) {
            version_of(&head, magic, &path.display().to_string())?;
        }
    }
    Ok(())
}

/// Encodes a snapshot's state bytes in the current format.
pub fn encode_state<T: Serialize>(state: &T) -> io::Result<Vec<u8>> {
    encode_file(STATE_MAGIC, state)
}

/// Decodes a snapshot's state bytes of any readable format.
pub fn decode_state<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, FormatError> {
    decode_file(bytes, STATE_MAGIC, what).map(|(value, _)| value)
}

/// A header and `value` in the current format.
pub fn encode_file<T: Serialize>(magic: [u8; 8], value: &T) -> io::Result<Vec<u8>> {
    let mut out = header(magic);
    let body = format::encode(format::highest(), value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a whole file of any readable format; returns the value and the format it was in.
pub fn decode_file<T: DeserializeOwned>(
    bytes: &[u8],
    magic: [u8; 8],
    what: &str,
) -> Result<(T, u32), FormatError> {
    let (version, start) = version_of(bytes, magic, what)?;
    let value = format::decode(version, &bytes[start..]).map_err(|e| FormatError::Corrupt {
        what: what.to_string(),
        reason: format!("undecodable in format {version}: {e}"),
    })?;
    Ok((value, version))
}

/// Replaces `dir/name` with `bytes` so that a crash at any point leaves the old file or the
/// new one: write `name.migrating` beside it, fsync it, rename it over, fsync the directory.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.migrating"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use push_protocol::FORMAT_VERSION;

    #[test]
    fn headers_name_the_version_and_newer_ones_are_refused() {
        let bytes = encode_file(SNAPSHOT_MAGIC, &(5u64, "x".to_string())).unwrap();
        assert_eq!(&bytes[..8], b"PUSHSNP\n");
        let (value, version): ((u64, String), u32) =
            decode_file(&bytes, SNAPSHOT_MAGIC, "snap").unwrap();
        assert_eq!((value.0, version), (5, FORMAT_VERSION));

        // No header: format 1 (bincode).
        let old = format::encode(1, &(5u64, "x".to_string())).unwrap();
        let (_, version): ((u64, String), u32) = decode_file(&old, SNAPSHOT_MAGIC, "snap").unwrap();
        assert_eq!(version, 1);

        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = decode_file::<(u64, String)>(&newer, SNAPSHOT_MAGIC, "the snapshot")
            .unwrap_err()
            .to_string();
        let (newest, oldest) = (FORMAT_VERSION, format::MIN_FORMAT_VERSION);
        assert!(
            err.contains(&format!("the snapshot is in format {}", newest + 1))
                && err.contains(&format!("formats {oldest} to {newest}")),
            "{err}"
        );
        let err = version_of(&bytes[..10], SNAPSHOT_MAGIC, "s").unwrap_err();
        assert!(err.to_string().contains("torn header"), "{err}");
    }

    #[test]
    fn a_newer_data_dir_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        let mut newer = header(LOG_MAGIC);
        newer[8..12].copy_from_slice(&99u32.to_le_bytes());
        newer.extend_from_slice(b"records of a future release");
        std::fs::write(dir.path().join("log/raft.log"), &newer).unwrap();
        let err = check_data_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("raft.log is in format 99"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("log/raft.log")).unwrap(),
            newer
        );
        // An empty directory and current files pass.
        std::fs::write(dir.path().join("log/raft.log"), header(LOG_MAGIC)).unwrap();
        check_data_dir(dir.path()).unwrap();
    }

    #[test]
    fn replace_file_leaves_only_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"old").unwrap();
        replace_file(dir.path(), "f", b"new").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        assert!(!dir.path().join("f.migrating").exists());
    }
}
