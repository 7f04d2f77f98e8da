//! Framing: `[u32 big-endian length][u8 kind][payload]`, where length counts kind + payload.
//!
//! Framing is apart from meaning: this module only finds frame boundaries and enforces the size
//! cap. A frame whose declared length exceeds the cap is refused before any of it is read, and
//! a body's buffer grows only as its bytes arrive, so an oversized or garbage prefix never
//! makes the reader allocate more than the sender actually sent.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame a client may send or receive (16 MiB).
pub const MAX_CLIENT_FRAME: usize = 16 << 20;
/// Largest frame between nodes (Raft batches and snapshot chunks; 64 MiB).
pub const MAX_PEER_FRAME: usize = 64 << 20;

/// Bytes reserved for a frame body before its bytes arrive.
const INITIAL_BODY: usize = 64 << 10;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// First frame on every connection: [`crate::Hello`].
    Hello = 1,
    /// Server's answer to a good hello: [`crate::Welcome`].
    Welcome = 2,
    /// A client request: `[u64 id][Op]`.
    Request = 3,
    /// A reply to a request: `[u64 id][u8 last][Result<Reply, ErrorBody>]`.
    Response = 4,
    /// A Raft RPC between nodes; the payload belongs to the node crate.
    Raft = 5,
    /// The answer to a Raft RPC.
    RaftReply = 6,
    /// A connection-level error ([`crate::ErrorBody`]); the sender closes after it.
    Error = 7,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Request,
            4 => Kind::Response,
            5 => Kind::Raft,
            6 => Kind::RaftReply,
            7 => Kind::Error,
            _ => return None,
        })
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes; send smaller requests (big values in several keys or queue items), or check that both ends are Push of the same version")]
    TooLarge { size: usize, limit: usize },
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("empty frame (no kind byte)")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the other end speaks TLS and this one does not: this node speaks TLS, so pass --tls-ca CA.pem (or set PUSH_TLS_CA) to talk to it")]
    Tls,
}

/// Whether a frame header is the start of a TLS record (handshake, alert, change cipher spec
/// or application data, version 3.x): its length would be over 300 MB, so it never is a frame.
fn is_tls_record(header: &[u8; 4]) -> bool {
    (0x14..=0x17).contains(&header[0]) && header[1] == 3
}

/// One frame.
#[derive(Debug)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// Reads one frame. `Ok(None)` is a clean close at a frame boundary.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated { got, want: 4 })
            };
        }
        got += n;
    }
    let size = u32::from_be_bytes(header) as usize;
    if is_tls_record(&header) {
        return Err(FrameError::Tls);
    }
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    if size == 0 {
        return Err(FrameError::Empty);
    }
    // Grow with the bytes that actually arrive: a prefix claiming the limit costs nothing
    // until the peer sends that much.
    let mut body = Vec::with_capacity(size.min(INITIAL_BODY));
    (&mut *reader)
        .take(size as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < size {
        return Err(FrameError::Truncated {
            got: body.len(),
            want: size,
        });
    }
    let kind = Kind::from_u8(body[0]).ok_or(FrameError::UnknownKind(body[0]))?;
    body.remove(0);
    Ok(Some(Frame {
        kind,
        payload: body,
    }))
}

/// Encodes a frame into one buffer, so a frame is written with one syscall.
pub fn encode_frame(kind: Kind, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    buf.push(kind as u8);
    for part in parts {
        buf.extend_from_slice(part);
    }
    buf
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: Kind,
    payload: &[u8],
) -> std::io::Result<()> {
    writer.write_all(&encode_frame(kind, &[payload])).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_clean_close() {
        let bytes = encode_frame(Kind::Request, &[b"abc"]);
        let mut input = &bytes[..];
        let frame = read_frame(&mut input, 100).await.unwrap().unwrap();
        assert_eq!(frame.kind, Kind::Request);
        assert_eq!(frame.payload, b"abc");
        assert!(read_frame(&mut input, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_truncated_and_unknown_are_errors() {
        let bytes = encode_frame(Kind::Request, &[&[0u8; 200]]);
        let err = read_frame(&mut &bytes[..], 100).await.unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                size: 201,
                limit: 100
            }
        ));

        // A TLS alert (what a TLS node answers a plain client) is recognised, not "too large".
        let alert = [0x15u8, 3, 3, 0, 2, 2, 40];
        let err = read_frame(&mut &alert[..], MAX_CLIENT_FRAME)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Tls), "{err}");

        let err = read_frame(&mut &bytes[..50], 1000).await.unwrap_err();
        assert!(matches!(err, FrameError::Truncated { got: 46, want: 201 }));

        let err = read_frame(&mut &bytes[..2], 1000).await.unwrap_err();
        assert!(matches!(err, FrameError::Truncated { got: 2, want: 4 }));

        let junk = [0u8, 0, 0, 1, 99];
        let err = read_frame(&mut &junk[..], 1000).await.unwrap_err();
        assert!(matches!(err, FrameError::UnknownKind(99)));
    }
}
