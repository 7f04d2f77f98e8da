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
//! | 3 | this one | postcard, files with a header | (see the shapes recorded in `tests/fixtures/shapes/format-3.txt`) |
//!
//! **Rule:** any change to the shape of a replicated or wire type bumps [`FORMAT_VERSION`],
//! keeps the previous version readable here (and in `consensus::format`), and adds a golden
//! fixture under `tests/fixtures/format-N/`; the shape test in the node crate fails otherwise.
//!
//! Connections: the hello names the highest version the sender speaks, the node answers with
//! the lowest common one in its welcome ([`negotiate`]), and both ends use it for every later
//! frame. The hello itself ([`handshake`]) has one frozen layout that every release reads.

pub mod handshake;
pub mod v1;

use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, CodecError};
use crate::message::Outcome;

/// The format this release writes and prefers to speak.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format this release reads and speaks.
pub const MIN_FORMAT_VERSION: u32 = 1;

/// A version outside what this release handles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{what} is in format {found}, newer than this release (push {release}) reads (formats {MIN_FORMAT_VERSION} to {FORMAT_VERSION}); run a newer Push release", release = crate::PUSH_VERSION)]
    Newer { what: String, found: u32 },
    #[error("{what} is in format {found}, older than this release (push {release}) reads (formats {MIN_FORMAT_VERSION} to {FORMAT_VERSION}); upgrade it with an older Push release first", release = crate::PUSH_VERSION)]
    Older { what: String, found: u32 },
}

/// Checks that `found` (the format of `what`) is one this release reads.
pub fn check(what: &str, found: u32) -> Result<u32, VersionError> {
    if found > FORMAT_VERSION {
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
    check("the other end", theirs.min(FORMAT_VERSION))
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
        2 | 3 => codec::encode(value),
        other => Err(CodecError::new(format!("no encoder for format {other}"))),
    };
    ENCODING.with(|e| e.set(before));
    result
}

/// Decodes a `T` from exactly `bytes`, written in format `version`.
pub fn decode<T: DeserializeOwned>(version: u32, bytes: &[u8]) -> Result<T, CodecError> {
    match version {
        1 => v1::decode(bytes),
        2 | 3 => decoding(version, || codec::decode(bytes)),
        other => Err(CodecError::new(format!("no decoder for format {other}"))),
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
}
