//! Hostile and malformed input on the node's one address: each case gets a clear error or a
//! closed connection, the node keeps serving everyone else, and nothing is lost.

use push_protocol::format::handshake as layout;
use push_protocol::frame::{encode_frame, Kind};
use push_protocol::{codec, ErrorBody, ErrorCode, Hello, Op, ReadMode, Reply, Role, Value, MAGIC};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::cluster::{get, set};
use crate::support::raw::{expect_error_and_close, hello, next, request, response, session};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_errors_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3).await;
    let addr = cluster.addr(2);
    let good = cluster.client(2).await;
    for i in 0..20 {
        set(&good, "safe", &format!("k{i}"), Value::Int(i)).await;
    }

    // Plain garbage (an HTTP request): the length prefix is absurd.
    let msg = expect_error_and_close(
        &addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ErrorCode::TooLarge,
    )
    .await;
    assert!(msg.contains("exceeds the limit"), "{msg}");

    // A small frame of an unknown kind.
    expect_error_and_close(&addr, &[0, 0, 0, 3, 99, 1, 2], ErrorCode::BadFrame).await;

    // A first frame that is not a hello.
    expect_error_and_close(
        &addr,
        &request(1, &codec::encode(&Op::Ping).expect("op")),
        ErrorCode::BadFrame,
    )
    .await;

    // Wrong token, missing token, a format older than any this node speaks (a newer one is
    // answered in this node's format: formats::clients_of_other_formats_agree...).
    let msg = expect_error_and_close(
        &addr,
        &hello("wrong", push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    assert!(msg.contains("token"), "{msg}");
    expect_error_and_close(
        &addr,
        &hello("", push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    let msg =
        expect_error_and_close(&addr, &hello(&cluster.token, 0), ErrorCode::VersionMismatch).await;
    assert!(
        msg.contains("up to 0") && msg.contains("formats 1 to"),
        "{msg}"
    );

    // A truncated frame: the header promises 100 bytes, 10 arrive, then the client hangs up.
    {
        let mut s = session(&addr, &cluster.token).await;
        let mut bytes = 100u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[3; 10]);
        s.write_all(&bytes).await.expect("write");
        s.shutdown().await.expect("shutdown");
        match next(&mut s).await {
            None => {}
            Some(f) => {
                assert_eq!(f.kind, Kind::Error);
                let body: ErrorBody = codec::decode(&f.payload).expect("body");
                assert!(
                    body.message.contains("closed in the middle of a frame"),
                    "{}",
                    body.message
                );
            }
        }
    }

    // An oversized frame after a good handshake.
    {
        let mut s = session(&addr, &cluster.token).await;
        s.write_all(&(200u32 << 20).to_be_bytes())
            .await
            .expect("write");
        let f = next(&mut s).await.expect("error frame");
        assert_eq!(f.kind, Kind::Error);
        let body: ErrorBody = codec::decode(&f.payload).expect("body");
        assert_eq!(body.code, ErrorCode::TooLarge);
        assert!(next(&mut s).await.is_none());
    }

    // An unknown op is answered with an error for that request; the connection stays usable.
    {
        let mut s = session(&addr, &cluster.token).await;
        s.write_all(&request(7, &[200, 1, 2, 3]))
            .await
            .expect("write");
        let (id, outcome) = response(&mut s).await;
        assert_eq!(id, 7);
        let err = outcome.expect_err("unknown op must fail");
        assert_eq!(err.code, ErrorCode::UnknownOp);
        assert!(
            err.message.contains("unknown or malformed request"),
            "{}",
            err.message
        );
        s.write_all(&request(8, &codec::encode(&Op::Ping).expect("op")))
            .await
            .expect("write");
        let (id, outcome) = response(&mut s).await;
        assert_eq!(id, 8);
        assert!(matches!(outcome, Ok(Reply::Pong)));
    }

    // A value nested far too deep (a stack bomb for a naive decoder) is refused, not crashed on.
    {
        let mut value = Value::None;
        for _ in 0..1000 {
            value = Value::List(vec![value]);
        }
        let op = Op::KvSet {
            map: "safe".into(),
            key: "bomb".into(),
            value,
        };
        let err = good.call(op).await.expect_err("too deep");
        assert_eq!(err.code(), Some(ErrorCode::UnknownOp));
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    // Through all of it: the same client still works, every node serves, nothing was lost.
    for id in 1..=3 {
        let c = cluster.client(id).await;
        for i in 0..20 {
            assert_eq!(
                get(&c, "safe", &format!("k{i}"), ReadMode::Linearizable).await,
                Some(Value::Int(i))
            );
        }
        assert_eq!(get(&c, "safe", "bomb", ReadMode::Linearizable).await, None);
    }
    set(&good, "safe", "after", Value::Bool(true)).await;
    assert!(cluster.status(2).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_port_refuses_raft_traffic_without_the_token() {
    let cluster = Cluster::start(1).await;
    let addr = cluster.addr(1);
    let hello = Hello {
        magic: MAGIC,
        protocol: push_protocol::FORMAT_VERSION,
        token: "nope".into(),
        role: Role::Peer,
        client: "evil".into(),
    };
    let bytes = encode_frame(Kind::Hello, &[&layout::encode_hello(&hello)]);
    expect_error_and_close(&addr, &bytes, ErrorCode::Unauthorized).await;
    // A peer with the token sending garbage instead of a Raft RPC is cut off; the node lives.
    let hello = Hello {
        token: cluster.token.clone(),
        ..hello
    };
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(&encode_frame(Kind::Hello, &[&layout::encode_hello(&hello)]))
        .await
        .expect("write");
    assert_eq!(next(&mut s).await.expect("welcome").kind, Kind::Welcome);
    s.write_all(&encode_frame(Kind::Raft, &[&[255, 255, 255]]))
        .await
        .expect("write");
    let f = next(&mut s).await.expect("error");
    assert_eq!(f.kind, Kind::Error);
    let c = cluster.client(1).await;
    set(&c, "m", "k", Value::Int(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_say_what_to_do_next() {
    let cluster = Cluster::start(1).await;
    // Wrong token through the CLI.
    let out = std::process::Command::new(crate::support::cluster::push_bin())
        .args(["status", &cluster.addr(1), "--token", "wrong"])
        .output()
        .expect("run");
    let err = crate::support::cluster::fails(&out);
    assert!(err.contains("wrong or missing cluster token"), "{err}");
    // Nothing listening.
    let port = crate::support::cluster::free_port();
    let err =
        crate::support::cluster::fails(&cluster.cli(&["status", &format!("127.0.0.1:{port}")]));
    assert!(err.contains("is a Push node running there?"), "{err}");
}
