//! The payload encoding: bincode with a hard size limit, shared by every crate.
//!
//! Decoding never allocates more than the input could describe (the limit is the input length),
//! and [`crate::Value`] refuses nesting deeper than [`crate::value::MAX_DEPTH`], so hostile input
//! cannot exhaust memory or the stack.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a payload could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct CodecError(String);

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// Encodes a value. Encoding of Push's own types cannot fail except on absurd sizes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    options(u64::MAX)
        .serialize(value)
        .map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value from exactly `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    options(bytes.len() as u64 + 64)
        .deserialize(bytes)
        .map_err(|e| CodecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes_rejected() {
        let bytes = encode(&(1u64, "two".to_string())).unwrap();
        let back: (u64, String) = decode(&bytes).unwrap();
        assert_eq!(back, (1, "two".to_string()));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<(u64, String)>(&longer).is_err());
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX/2 elements, backed by three bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
