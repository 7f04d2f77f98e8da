//! Hostile input on the wire: wrong or missing tokens, oversized frames, values nested past
//! the guard, invalid UTF-8, unknown ops. Each gets a clear error and closes only its connection.

use super::*;

pub(super) async fn wrong_token(ctx: Arc<Ctx>, id: u64) {
    let msg = expect_error_and_close(
        ctx.addr(id),
        &hello("wrong", push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    assert!(
        msg.contains("wrong or missing cluster token") && msg.contains("pass --token"),
        "{msg}"
    );
}

pub(super) async fn missing_token(ctx: Arc<Ctx>, id: u64) {
    let msg = expect_error_and_close(
        ctx.addr(id),
        &hello("", push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    assert!(msg.contains("wrong or missing cluster token"), "{msg}");
}

pub(super) async fn token_of_the_right_length(ctx: Arc<Ctx>, id: u64) {
    let mut forged: Vec<u8> = ctx.token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(forged.len(), ctx.token.len());
    let msg = expect_error_and_close(
        ctx.addr(id),
        &hello(&forged, push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    assert!(msg.contains("wrong or missing cluster token"), "{msg}");
}

pub(super) async fn oversized_frame(ctx: Arc<Ctx>, id: u64) {
    let mut s = session(ctx.addr(id), &ctx.token).await;
    s.write_all(&(200u32 << 20).to_be_bytes())
        .await
        .expect("write");
    let msg = expect_error_then_close(&mut s, ErrorCode::TooLarge).await;
    assert!(
        msg.contains(&format!("exceeds the limit of {MAX_CLIENT_FRAME} bytes")),
        "{msg}"
    );
}

pub(super) async fn frame_just_over_the_client_limit(ctx: Arc<Ctx>, id: u64) {
    let mut s = session(ctx.addr(id), &ctx.token).await;
    let size = MAX_CLIENT_FRAME as u32 + 1;
    s.write_all(&size.to_be_bytes()).await.expect("write");
    // Start sending the body too: the node must refuse on the header, not buffer 16 MiB.
    let _ = s.write_all(&vec![7u8; 64 * 1024]).await;
    let msg = expect_error_then_close(&mut s, ErrorCode::TooLarge).await;
    assert!(
        msg.contains(&format!("frame of {size} bytes exceeds the limit")),
        "{msg}"
    );
}

pub(super) async fn value_nested_past_the_guard(ctx: Arc<Ctx>, id: u64) {
    let mut value = Value::None;
    for _ in 0..=push_protocol::value::MAX_DEPTH {
        value = Value::List(vec![value]);
    }
    let c = ctx.client(id).await;
    let err = c
        .call(Op::KvSet {
            map: "hostile".into(),
            key: "deep".into(),
            value,
        })
        .await
        .expect_err("too deep");
    assert_eq!(err.code(), Some(ErrorCode::UnknownOp), "{err}");
    assert!(err.to_string().contains("nested deeper than 128"), "{err}");
    // The same connection goes on working, and nothing was written.
    assert!(matches!(
        c.call(Op::KvGet {
            map: "hostile".into(),
            key: "deep".into(),
            read: ReadMode::Linearizable
        })
        .await,
        Ok(Reply::Value(None))
    ));
}

pub(super) async fn invalid_utf8_in_a_string_field(ctx: Arc<Ctx>, id: u64) {
    let op = Op::KvSet {
        map: "QQQQ".into(),
        key: "k".into(),
        value: Value::Int(1),
    };
    let mut bytes = codec::encode(&op).expect("encode");
    let at = bytes
        .windows(4)
        .position(|w| w == b"QQQQ")
        .expect("the map name in the encoding");
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    let mut s = session(ctx.addr(id), &ctx.token).await;
    s.write_all(&request(1, &bytes)).await.expect("write");
    let (rid, outcome) = response(&mut s).await;
    assert_eq!(rid, 1);
    let err = outcome.expect_err("invalid UTF-8 must be refused");
    assert_eq!(err.code, ErrorCode::UnknownOp);
    assert!(
        err.message.contains("unknown or malformed request") && err.message.contains("utf-8"),
        "{}",
        err.message
    );
    s.write_all(&request(2, &codec::encode(&Op::Ping).expect("op")))
        .await
        .expect("write");
    assert!(matches!(response(&mut s).await, (2, Ok(Reply::Pong))));
}

pub(super) async fn unknown_op(ctx: Arc<Ctx>, id: u64) {
    // Variant index 1000 as a LEB128 varint (postcard), far past the end of `Op`.
    let mut s = session(ctx.addr(id), &ctx.token).await;
    s.write_all(&request(5, &[0xe8, 0x07, 1, 2, 3]))
        .await
        .expect("write");
    let (rid, outcome) = response(&mut s).await;
    assert_eq!(rid, 5);
    let err = outcome.expect_err("unknown op");
    assert_eq!(err.code, ErrorCode::UnknownOp);
    assert!(
        err.message.contains("unknown or malformed request")
            && err.message.contains("different version"),
        "{}",
        err.message
    );
    s.write_all(&request(6, &codec::encode(&Op::Ping).expect("op")))
        .await
        .expect("write");
    assert!(matches!(response(&mut s).await, (6, Ok(Reply::Pong))));
}
