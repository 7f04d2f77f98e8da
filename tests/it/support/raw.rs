//! Raw-socket helpers for hostile-input tests: hand-made hellos and requests, reading frames
//! with a deadline, and expecting an error frame followed by a closed connection.

use std::time::Duration;

use push_protocol::format::handshake as layout;
use push_protocol::frame::{encode_frame, read_frame, Frame, Kind, MAX_CLIENT_FRAME};
use push_protocol::{codec, ErrorBody, ErrorCode, Hello, Outcome, Role, MAGIC};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An encoded client hello frame.
pub fn hello(token: &str, protocol: u32) -> Vec<u8> {
    let hello = Hello {
        magic: MAGIC,
        protocol,
        token: token.into(),
        role: Role::Client,
        client: "test".into(),
    };
    encode_frame(Kind::Hello, &[&layout::encode_hello(&hello)])
}

/// An error frame's body: a refusal before the welcome (the handshake's layout) or an error
/// after it (the connection's format, the current one for these tests).
pub fn error_body(payload: &[u8]) -> ErrorBody {
    layout::decode_refusal(payload)
        .or_else(|_| codec::decode(payload))
        .expect("error body")
}

/// The next frame, or None when the node closed the connection (or sent garbage).
pub async fn next(stream: &mut TcpStream) -> Option<Frame> {
    tokio::time::timeout(Duration::from_secs(5), read_frame(stream, MAX_CLIENT_FRAME))
        .await
        .expect("the node neither answered nor closed within 5 s")
        .ok()
        .flatten()
}

/// Sends `bytes` and expects an error frame with `code`, then a closed connection; returns
/// the error's message.
pub async fn expect_error_and_close(addr: &str, bytes: &[u8], code: ErrorCode) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    expect_error_then_close(&mut s, code).await
}

/// Expects an error frame with `code` on `s`, then a closed connection; returns the message.
pub async fn expect_error_then_close(s: &mut TcpStream, code: ErrorCode) -> String {
    let frame = next(s).await.expect("an error frame before the close");
    assert_eq!(frame.kind, Kind::Error, "expected an error frame");
    let body = error_body(&frame.payload);
    assert_eq!(body.code, code, "{}", body.message);
    assert!(
        next(s).await.is_none(),
        "the connection should be closed after the error"
    );
    body.message
}

/// A handshaken raw connection.
pub async fn session(addr: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&hello(token, push_protocol::FORMAT_VERSION))
        .await
        .expect("hello");
    let welcome = next(&mut s).await.expect("welcome");
    assert_eq!(welcome.kind, Kind::Welcome);
    s
}

/// A request frame carrying already-encoded op bytes (which may be deliberately malformed).
pub fn request(id: u64, op_bytes: &[u8]) -> Vec<u8> {
    encode_frame(Kind::Request, &[&id.to_be_bytes(), op_bytes])
}

/// The next response on a raw connection: its request id and outcome.
pub async fn response(s: &mut TcpStream) -> (u64, Outcome) {
    let frame = next(s).await.expect("a response");
    assert_eq!(frame.kind, Kind::Response);
    let id = u64::from_be_bytes(frame.payload[..8].try_into().expect("id"));
    (id, codec::decode(&frame.payload[9..]).expect("outcome"))
}
