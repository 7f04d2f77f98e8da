//! Format versions: the one place that numbers Push's byte formats and picks the codec by
//! version.
//!
//! One number covers everything a release writes or speaks: the client and peer protocols,
//! and (in the node crate's `consensus::format`) the raft log and snapshot files. A release
//! writes [`FORMAT_VERSION`] and reads or speaks every version from [`MIN_FORMAT_VERSION`] up.
//!
//! | version | release | encoding | what changed |
//! |---|---|---|---|
//! | 1 | up to f6f8f84 | bincode 1.3 (varint), files without a header | the first |
//! | 2 | up to a920e0a | postcard, files with a header | encoding; `NodeStatus` gained `format_version`, `min_format_version`; `CommandOp::Batch` (group commit); users (`Op`/`Reply`/`CommandOp` user variants, `State.users`); a series' handler `backlog` |
//! | 3 | up to faf9308 | postcard, files with a header | membership (`Op::Remove`, `Op::JoinLearner`, `Op::Promote`), worker sessions (`Op::SessionOpenOn`), secrets and config, backup (refused over format-2 connections, [`introduced_in`]), realms; `NodeStatus.workers`; shapes in `tests/fixtures/shapes/format-3.txt` |
//! | 4 | this one | postcard, files with a header | `Op::Complete.module` (an editor's file of the app completes in its module); dependencies: `Op::Platform`/`Reply::Platform` (`PlatformInfo`), `Op::Envs`/`Reply::Envs` (`EnvRow`); wheels travel as blobs under `.wheels/` in a version's tree; blob contents larger than 64 KiB are files beside the state (`CodeStore.sizes`: hash -> size of every blob; `CodeStore.blobs` keeps the bytes of blobs of at most 64 KiB, no shape change), files over one upload go up in pieces joined by `Op::JoinBlob`/`CommandOp::JoinBlob`, and the state bytes end with a blob section carrying the files (`consensus::snapshot_file`); snapshot files and state bytes streamed (meta length, state length and CRC-32 in their headers; `consensus::snapshot_file`); app pools: `WorkerRow.pool`, `Op::SessionOpenOn.pool`; post-mortem and tracing: `Op::Debug` (`DebugAction`), `Reply::Debug` (`DebugReply`, `FailureRow`, `FailureView`, `FrameInfo`); channels: `Op::Publish`/`Reply::Published`, `CommandOp::Publish`/`Applied::Published`, `State.channels` (`model::channels`); files read in parts (`push export` of big versions): `Op::FileSizes`/`Reply::FileSizes`, `Op::FilePart`/`Reply::FilePart`; see the shapes recorded in `tests/fixtures/shapes/format-4.txt` |
//!
//! **Rule:** any change to the shape of a replicated or wire type bumps [`FORMAT_VERSION`],
//! keeps the previous version readable here (and in `consensus::format`), and adds a golden
//! fixture under `tests/fixtures/format-N/`; the shape test in the node crate fails otherwise.
//!
//! Connections: the hello names the highest version the sender speaks, the node answers with
//! the lowest common one in its welcome ([`negotiate`]), and both ends use it for every later
//! frame. The hello itself ([`handshake`]) has one frozen layout that every release reads.
//!
//! A process can be held to an older format ([`limit_to`]; `push node --format N`), so that
//! one binary plays the previous release in a rolling upgrade: [`highest`] is what it
//! writes and speaks.

pub mod handshake;
pub mod v1;

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, CodecError};
use crate::message::{ErrorBody, ErrorCode, Op, Outcome};

/// The format this release writes and prefers to speak.
pub const FORMAT_VERSION: u32 = 4;

/// The oldest format this release reads and speaks.
pub const MIN_FORMAT_VERSION: u32 = 1;

/// The highest format this process writes, reads and speaks: [`FORMAT_VERSION`] unless
/// lowered at start by [`limit_to`].
static HIGHEST: AtomicU32 = AtomicU32::new(FORMAT_VERSION);

/// The highest format this process writes, reads and speaks right now: [`FORMAT_VERSION`],
/// or lower when the process was started as a previous release would run ([`limit_to`]).
pub fn highest() -> u32 {
    HIGHEST.load(Ordering::Relaxed)
}

/// A format this release cannot be limited to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this release (push {release}) can run as format {MIN_FORMAT_VERSION} to {FORMAT_VERSION}, not {asked}; pick one of those or leave the setting out", release = crate::PUSH_VERSION)]
pub struct LimitError {
    pub asked: u32,
}

/// Makes this process write, read and speak formats only up to `version`, as the release
/// that introduced `version` would: its files get that version's header, its connections
/// offer and accept at most that version, and newer data or peers are refused. Used to run
/// a node "as the previous release" (a rolling upgrade rehearsed with one binary, or a node
/// kept at the old format while a cluster is half upgraded). Call it before anything is
/// read or written.
pub fn limit_to(version: u32) -> Result<(), LimitError> {
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(LimitError { asked: version });
    }
    HIGHEST.store(version, Ordering::Relaxed);
    Ok(())
}

/// A version outside what this release handles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{what} is in format {found}, newer than this release (push {release}) reads (formats {MIN_FORMAT_VERSION} to {highest}); run a newer Push release", release = crate::PUSH_VERSION, highest = highest())]
    Newer { what: String, found: u32 },
    #[error("{what} is in format {found}, older than this release (push {release}) reads (formats {MIN_FORMAT_VERSION} to {highest}); upgrade it with an older Push release first", release = crate::PUSH_VERSION, highest = highest())]
    Older { what: String, found: u32 },
}

/// The format that introduced `op`'s kind of request (1 for the kinds every format knows;
/// tracked from format 3 on): a connection of an older format cannot carry it, because the
/// other end cannot decode it.
pub fn introduced_in(op: &Op) -> u32 {
    match op {
        Op::Remove { .. }
        | Op::JoinLearner { .. }
        | Op::Promote { .. }
        | Op::SessionOpenOn { .. }
        | Op::SecretSet { .. }
        | Op::Secrets { .. }
        | Op::SecretGet { .. }
        | Op::ConfigSet { .. }
        | Op::Config { .. }
        | Op::Backup => 3,
        Op::Platform
        | Op::Envs
        | Op::Debug { .. }
        | Op::Publish { .. }
        | Op::JoinBlob { .. }
        | Op::FileSizes { .. }
        | Op::FilePart { .. } => 4,
        Op::Forwarded { op, .. } | Op::Audited { op, .. } => introduced_in(op),
        _ => 1,
    }
}

/// Refuses `op` on a connection of format `version` that cannot carry it, naming both
/// formats and the other end's release (`theirs`), instead of sending what it cannot decode.
pub fn check_op(op: &Op, version: u32, theirs: &str) -> Result<(), ErrorBody> {
    let needs = introduced_in(op);
    if needs <= version {
        return Ok(());
    }
    Err(ErrorBody::new(
        ErrorCode::VersionMismatch,
        format!(
            "this request needs format {needs}, but the node (push {theirs}) speaks format {version}; upgrade that node (or send it to an upgraded one) first"
        ),
    ))
}

/// Checks that `found` (the format of `what`) is one this release reads.
pub fn check(what: &str, found: u32) -> Result<u32, VersionError> {
    if found > highest() {
        Err(VersionError::Newer {
            what: what.to_string(),
            found,
        })
    } else if found < MIN_FORMAT_VERSION {
        Err(VersionError::Older {
            what: what.to_string(),
            found,
        })
    } else {
        Ok(found)
    }
}

/// The version a connection uses when the other end speaks up to `theirs`: the lowest
/// common one. Refused when the other end is older than everything this release speaks.
pub fn negotiate(theirs: u32) -> Result<u32, VersionError> {
    check("the other end", theirs.min(highest()))
}

thread_local! {
    static DECODING: Cell<u32> = const { Cell::new(FORMAT_VERSION) };
    static ENCODING: Cell<u32> = const { Cell::new(FORMAT_VERSION) };
}

/// The format being encoded on this thread (see [`absent_before_3`]).
pub fn encoding_version() -> u32 {
    ENCODING.with(Cell::get)
}

/// Leaves out a field added in format 3 while encoding for an older format
/// (`#[serde(skip_serializing_if = "push_protocol::format::absent_before_3")]`, together with
/// `deserialize_with = "push_protocol::format::added_in_3"`), so an older peer or client reads
/// the shape it knows.
pub fn absent_before_3<T>(_: &T) -> bool {
    encoding_version() < 3
}

/// Leaves out a field added in format 4 while encoding for an older format; see
/// [`absent_before_3`].
pub fn absent_before_4<T>(_: &T) -> bool {
    encoding_version() < 4
}

/// Reads a field added in format 4; see [`added_in_2`].
pub fn added_in_4<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    if decoding_version() < 4 {
        Ok(T::default())
    } else {
        T::deserialize(deserializer)
    }
}

/// Reads a field added in format 3; see [`added_in_2`].
pub fn added_in_3<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    if decoding_version() < 3 {
        Ok(T::default())
    } else {
        T::deserialize(deserializer)
    }
}

/// The format being decoded on this thread. A replicated type whose shape changed since an
/// older format reads that format's shape when this says so (see [`added_in_2`]): the codecs
/// carry no field counts, so the type must know which shape the bytes have.
pub fn decoding_version() -> u32 {
    DECODING.with(Cell::get)
}

/// Reads a field added in format 2 (`#[serde(deserialize_with = "added_in_2")]`): bytes of
/// an older format have no such field, so it reads as its default without consuming any.
pub fn added_in_2<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    if decoding_version() < 2 {
        Ok(T::default())
    } else {
        T::deserialize(deserializer)
    }
}

/// Runs `decode` with [`decoding_version`] set to `version`, restoring it afterwards.
pub(crate) fn decoding<R>(version: u32, decode: impl FnOnce() -> R) -> R {
    let before = DECODING.with(|d| d.replace(version));
    let result = decode();
    DECODING.with(|d| d.set(before));
    result
}

/// Encodes `value` in format `version`, with [`encoding_version`] set to it meanwhile.
pub fn encode<T: Serialize + ?Sized>(version: u32, value: &T) -> Result<Vec<u8>, CodecError> {
    let before = ENCODING.with(|e| e.replace(version));
    let result = match version {
        1 => v1::encode(value),
        2..=4 => codec::encode(value),
        other => Err(CodecError::new(format!("no encoder for format {other}"))),
    };
    ENCODING.with(|e| e.set(before));
    result
}

/// Decodes a `T` from exactly `bytes`, written in format `version`.
pub fn decode<T: DeserializeOwned>(version: u32, bytes: &[u8]) -> Result<T, CodecError> {
    match version {
        1 => v1::decode(bytes),
        2..=4 => decoding(version, || codec::decode(bytes)),
        other => Err(CodecError::new(format!("no decoder for format {other}"))),
    }
}

/// Decodes a `T` written in format `version` (2 and later) from the start of `bytes`;
/// returns it and the bytes that follow it (a backup's blob section).
pub fn decode_prefix<T: DeserializeOwned>(
    version: u32,
    bytes: &[u8],
) -> Result<(T, &[u8]), CodecError> {
    match version {
        2..=4 => decoding(version, || codec::decode_prefix(bytes)),
        other => Err(CodecError::new(format!(
            "no prefix decoder for format {other}"
        ))),
    }
}

/// Encodes `value` in format `version` (2 and later) into `writer` as it goes, without
/// building the bytes in memory first (snapshots and backups of a big state).
pub fn encode_into<T: Serialize + ?Sized, W: std::io::Write>(
    version: u32,
    value: &T,
    writer: W,
) -> Result<W, CodecError> {
    let before = ENCODING.with(|e| e.replace(version));
    let result = match version {
        2..=4 => postcard::to_io(value, writer).map_err(|e| CodecError::new(e.to_string())),
        other => Err(CodecError::new(format!(
            "no streaming encoder for format {other}"
        ))),
    };
    ENCODING.with(|e| e.set(before));
    result
}

/// Decodes a `T` written in format `version` (2 and later) from `reader` as it goes.
/// `scratch` holds one string or byte string at a time, so it must be as long as the longest
/// one (a frame's limit is enough: every value arrived in one). The caller checks that the
/// reader holds nothing after the value.
pub fn decode_from<T: DeserializeOwned, R: std::io::Read>(
    version: u32,
    reader: R,
    scratch: &mut [u8],
) -> Result<(T, R), CodecError> {
    match version {
        2..=4 => decoding(version, || {
            crate::value::take_refusal();
            postcard::from_io((reader, scratch))
                .map(|(value, (reader, _))| (value, reader))
                .map_err(|e| {
                    CodecError::new(match crate::value::take_refusal() {
                        Some(why) => why.to_string(),
                        None => e.to_string(),
                    })
                })
        }),
        other => Err(CodecError::new(format!(
            "no streaming decoder for format {other}"
        ))),
    }
}

/// Encodes a response body: as [`encode`], with `NodeStatus` in the shape `version` knows.
pub fn encode_outcome(version: u32, outcome: &Outcome) -> Result<Vec<u8>, CodecError> {
    match version {
        1 => v1::encode_outcome(outcome),
        _ => encode(version, outcome),
    }
}

/// Decodes a response body written in format `version`.
pub fn decode_outcome(version: u32, bytes: &[u8]) -> Result<Outcome, CodecError> {
    match version {
        1 => v1::decode_outcome(bytes),
        _ => decode(version, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_outside_the_range_are_named() {
        assert_eq!(check("log", 1), Ok(1));
        let newer = check("the raft log", FORMAT_VERSION + 1).unwrap_err();
        let text = newer.to_string();
        assert!(
            text.contains(&format!("format {}", FORMAT_VERSION + 1)) && text.contains("newer"),
            "{text}"
        );
        assert!(text.contains(&format!("to {FORMAT_VERSION}")), "{text}");
        assert!(check("x", 0).unwrap_err().to_string().contains("older"));
    }

    #[test]
    fn a_limit_outside_the_formats_of_this_release_is_refused() {
        // (Setting a valid limit changes the whole process, so the node tests try that.)
        for asked in [0, FORMAT_VERSION + 1] {
            let e = limit_to(asked).unwrap_err();
            assert!(
                e.to_string().contains(&format!(
                    "format {MIN_FORMAT_VERSION} to {FORMAT_VERSION}, not {asked}"
                )),
                "{e}"
            );
        }
        assert_eq!(highest(), FORMAT_VERSION);
    }

    #[test]
    fn requests_newer_than_a_connection_are_refused_naming_both_formats() {
        let remove = Op::Remove { id: 3 };
        assert!(check_op(&remove, 3, "0.1.0").is_ok());
        assert!(check_op(&Op::Ping, 2, "0.1.0").is_ok());
        let forwarded = Op::Forwarded {
            hops: 1,
            op: Box::new(remove),
        };
        let e = check_op(&forwarded, 2, "0.0.9").unwrap_err();
        assert_eq!(e.code, ErrorCode::VersionMismatch);
        assert!(
            e.message.contains("needs format 3")
                && e.message.contains("(push 0.0.9) speaks format 2"),
            "{}",
            e.message
        );
    }

    #[test]
    fn negotiation_picks_the_lowest_common_version() {
        assert_eq!(negotiate(1), Ok(1));
        assert_eq!(negotiate(FORMAT_VERSION), Ok(FORMAT_VERSION));
        assert_eq!(negotiate(FORMAT_VERSION + 5), Ok(FORMAT_VERSION));
        assert!(negotiate(0).is_err());
    }

    #[test]
    fn each_version_round_trips_with_its_own_codec() {
        let value = (300u64, "three hundred".to_string(), vec![1u8, 2, 3]);
        for version in MIN_FORMAT_VERSION..=FORMAT_VERSION {
            let bytes = encode(version, &value).unwrap();
            assert_eq!(
                decode::<(u64, String, Vec<u8>)>(version, &bytes).unwrap(),
                value
            );
        }
        assert_ne!(encode(1, &value).unwrap(), encode(2, &value).unwrap());
        assert!(encode(FORMAT_VERSION + 1, &value).is_err());
    }

    #[test]
    fn streamed_encoding_is_the_same_bytes_and_decodes_from_a_reader() {
        let value = (300u64, "three hundred".to_string(), vec![1u8, 2, 3]);
        for version in 2..=FORMAT_VERSION {
            let streamed = encode_into(version, &value, Vec::new()).unwrap();
            assert_eq!(streamed, encode(version, &value).unwrap());
            let mut scratch = vec![0u8; 64];
            let (back, rest): ((u64, String, Vec<u8>), &[u8]) =
                decode_from(version, &streamed[..], &mut scratch).unwrap();
            assert_eq!((back, rest.len()), (value.clone(), 0));
            // Cut short: an error, never a panic.
            let cut = &streamed[..streamed.len() - 2];
            assert!(decode_from::<(u64, String, Vec<u8>), _>(version, cut, &mut scratch).is_err());
        }
        assert!(encode_into(1, &value, Vec::new()).is_err());
    }
}
