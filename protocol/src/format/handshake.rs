//! The handshake's frozen layout: the hello, the welcome and a refusal are laid out the same
//! way by every release, so any two releases can always agree on a version or say why not.
//!
//! The layout is format 1's (bincode with varint integers), written out by hand so that it
//! outlives the bincode dependency: an integer below 251 is one byte, else a marker byte
//! (251: u16, 252: u32, 253: u64 follow, little-endian); a string is its length then its
//! UTF-8 bytes; an enum is its variant index as an integer.
//!
//! - hello: `"PUSH"`, the highest format the sender speaks, token, role, client name
//! - welcome: node id, the format chosen for the connection, the node's release
//! - refusal (`Error` frame before a welcome, or from the accept loop): code, message
//!
//! These three never change; anything new travels after the welcome, in the chosen format.

use crate::codec::CodecError;
use crate::message::{ErrorBody, ErrorCode, Hello, Role, Welcome};

/// The error codes in their frozen order.
const CODES: [ErrorCode; 10] = [
    ErrorCode::BadFrame,
    ErrorCode::TooLarge,
    ErrorCode::Unauthorized,
    ErrorCode::VersionMismatch,
    ErrorCode::UnknownOp,
    ErrorCode::NotFound,
    ErrorCode::Invalid,
    ErrorCode::NoLeader,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
];

fn put_int(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(v as u8);
    } else if v <= u16::MAX as u64 {
        out.push(251);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(252);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_int(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

fn malformed(what: &str) -> CodecError {
    CodecError::new(format!("malformed handshake: {what}"))
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < n {
            return Err(malformed("ends early"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn int(&mut self) -> Result<u64, CodecError> {
        let first = self.take(1)?[0];
        let wide = |b: &[u8]| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64);
        Ok(match first {
            0..=250 => first as u64,
            251 => wide(self.take(2)?),
            252 => wide(self.take(4)?),
            253 => wide(self.take(8)?),
            _ => return Err(malformed("bad integer marker")),
        })
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        u32::try_from(self.int()?).map_err(|_| malformed("integer too large"))
    }

    fn string(&mut self) -> Result<String, CodecError> {
        let len = usize::try_from(self.int()?).map_err(|_| malformed("string too long"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }

    fn end(self) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes"))
        }
    }
}

pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    let mut out = hello.magic.to_vec();
    put_int(&mut out, hello.protocol as u64);
    put_str(&mut out, &hello.token);
    put_int(&mut out, matches!(hello.role, Role::Peer) as u64);
    put_str(&mut out, &hello.client);
    out
}

pub fn decode_hello(bytes: &[u8]) -> Result<Hello, CodecError> {
    let mut r = Reader { bytes };
    let mut magic = [0u8; 4];
    magic.copy_from_slice(r.take(4)?);
    let protocol = r.u32()?;
    let token = r.string()?;
    let role = match r.int()? {
        0 => Role::Client,
        1 => Role::Peer,
        _ => return Err(malformed("unknown role")),
    };
    let client = r.string()?;
    r.end()?;
    Ok(Hello {
        magic,
        protocol,
        token,
        role,
        client,
    })
}

pub fn encode_welcome(welcome: &Welcome) -> Vec<u8> {
    let mut out = Vec::new();
    put_int(&mut out, welcome.node_id);
    put_int(&mut out, welcome.protocol as u64);
    put_str(&mut out, &welcome.push_version);
    out
}

pub fn decode_welcome(bytes: &[u8]) -> Result<Welcome, CodecError> {
    let mut r = Reader { bytes };
    let welcome = Welcome {
        node_id: r.int()?,
        protocol: r.u32()?,
        push_version: r.string()?,
    };
    r.end()?;
    Ok(welcome)
}

pub fn encode_refusal(body: &ErrorBody) -> Vec<u8> {
    let mut out = Vec::new();
    let index = CODES.iter().position(|c| *c == body.code).unwrap_or(0);
    put_int(&mut out, index as u64);
    put_str(&mut out, &body.message);
    out
}

pub fn decode_refusal(bytes: &[u8]) -> Result<ErrorBody, CodecError> {
    let mut r = Reader { bytes };
    let code = usize::try_from(r.int()?)
        .ok()
        .and_then(|i| CODES.get(i).copied())
        .ok_or_else(|| malformed("unknown error code"))?;
    let message = r.string()?;
    r.end()?;
    Ok(ErrorBody { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAGIC;

    /// The hand-written layout is byte for byte what format 1 (bincode) wrote.
    #[test]
    fn layout_equals_format_1() {
        for (token, client) in [
            ("t", "c"),
            (&"x".repeat(300) as &str, &"é".repeat(40000) as &str),
        ] {
            for role in [Role::Client, Role::Peer] {
                let hello = Hello {
                    magic: MAGIC,
                    protocol: 70000,
                    token: token.into(),
                    role,
                    client: client.into(),
                };
                let bytes = encode_hello(&hello);
                assert_eq!(bytes, super::super::v1::encode(&hello).unwrap());
                let back = decode_hello(&bytes).unwrap();
                assert_eq!((back.protocol, back.role), (70000, role));
                assert_eq!((back.token, back.client), (hello.token, hello.client));
            }
        }
        let welcome = Welcome {
            node_id: u64::MAX,
            protocol: 2,
            push_version: "0.1.0".into(),
        };
        let bytes = encode_welcome(&welcome);
        assert_eq!(bytes, super::super::v1::encode(&welcome).unwrap());
        assert_eq!(decode_welcome(&bytes).unwrap().node_id, u64::MAX);
        for code in CODES {
            let body = ErrorBody::new(code, "why");
            let bytes = encode_refusal(&body);
            assert_eq!(bytes, super::super::v1::encode(&body).unwrap());
            assert_eq!(decode_refusal(&bytes).unwrap(), body);
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let hello = encode_hello(&Hello {
            magic: MAGIC,
            protocol: 2,
            token: "token".into(),
            role: Role::Client,
            client: "c".into(),
        });
        for cut in 0..hello.len() {
            assert!(decode_hello(&hello[..cut]).is_err());
        }
        let mut longer = hello.clone();
        longer.push(0);
        assert!(decode_hello(&longer).is_err());
        assert!(decode_refusal(&[99, 0]).is_err());
        // A string claiming far more bytes than there are.
        assert!(decode_welcome(&[1, 2, 253, 255, 255, 255, 255, 255, 255, 255, 255]).is_err());
    }
}
