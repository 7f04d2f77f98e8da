//! The payload encoding of the current format ([`crate::format::FORMAT_VERSION`]): postcard,
//! strict about trailing bytes, shared by every crate.
//!
//! Postcard is maintained, has a written specification of its wire format and is compact
//! (LEB128 integers). Decoding never allocates more than the input could describe (sequences
//! grow as their elements arrive), and [`crate::Value`] refuses nesting deeper than
//! [`crate::value::MAX_DEPTH`], so hostile input cannot exhaust memory or the stack. Older
//! formats are read through [`crate::format`].

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a payload could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct CodecError(String);

impl CodecError {
    pub(crate) fn new(reason: impl Into<String>) -> CodecError {
        CodecError(reason.into())
    }
}

/// Encodes a value. Encoding of Push's own types cannot fail except on absurd sizes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value from exactly `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = decode_prefix(bytes)?;
    if !rest.is_empty() {
        return Err(CodecError(format!(
            "{} trailing bytes after the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// Decodes a `T` from the start of `bytes`; returns it and the bytes after it.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    crate::value::take_refusal();
    postcard::take_from_bytes(bytes).map_err(|e| {
        CodecError(match crate::value::take_refusal() {
            Some(why) => why.to_string(),
            None => e.to_string(),
        })
    })
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
        // A Vec<u64> claiming u64::MAX/2 elements (LEB128), backed by three bytes.
        let mut bytes = vec![0xff; 9];
        bytes.push(0x3f);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert!(decode::<Vec<u64>>(&bytes).is_err());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
