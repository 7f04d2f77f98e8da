//! One connection: the handshake, then either the client loop (concurrent requests, replies
//! matched by id) or the peer loop (Raft RPCs, one at a time).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use push_protocol::format::{self, handshake as layout};
use push_protocol::frame::{self, FrameError, Kind, MAX_CLIENT_FRAME, MAX_PEER_FRAME};
use push_protocol::tls::Stream;
use push_protocol::{ErrorBody, ErrorCode, Hello, Op, Outcome, Reply, Role, Welcome, MAGIC};
use tokio::sync::{mpsc, oneshot};

use super::access::{self, Principal};
use super::limits::{Stage, Waiting};
use super::replies::Replies;
use crate::consensus::network::{serve_rpc, RaftRpc};
use crate::node::Node;
use crate::shutdown::Shutdown;

/// Sends a refusal before the welcome, in the handshake's frozen layout.
async fn send_error(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    code: ErrorCode,
    message: String,
) {
    let bytes = layout::encode_refusal(&ErrorBody::new(code, message));
    let _ = frame::write_frame(writer, Kind::Error, &bytes).await;
}

/// Sends a connection-level error after the welcome, in the connection's format.
async fn send_error_in(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    version: u32,
    code: ErrorCode,
    message: String,
) {
    if let Ok(bytes) = format::encode(version, &ErrorBody::new(code, message)) {
        let _ = frame::write_frame(writer, Kind::Error, &bytes).await;
    }
}

fn frame_error_code(e: &FrameError) -> ErrorCode {
    match e {
        FrameError::TooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::BadFrame,
    }
}

/// Serves one accepted connection to its end. It holds a place in the waiting pool until its
/// hello (due within `hello_timeout`), then one among the peers or the clients.
pub async fn handle(
    mut stream: Stream,
    peer: SocketAddr,
    node: Arc<Node>,
    shutdown: Shutdown,
    waiting: Waiting,
    hello_timeout: Duration,
) {
    let read = tokio::time::timeout(
        hello_timeout,
        frame::read_frame(&mut stream, MAX_CLIENT_FRAME),
    );
    let hello = tokio::select! {
        // A newer connection took this silent one's place in a full waiting pool.
        _ = waiting.evicted() => return,
        hello = read => hello,
    };
    let hello = match hello {
        Err(_) => {
            waiting.port().closed("deadline");
            // Bounded: a peer that does not read cannot hold the connection open.
            let _ = tokio::time::timeout(
                Duration::from_millis(100),
                send_error(
                    &mut stream,
                    ErrorCode::BadFrame,
                    format!("no hello within {} ms", hello_timeout.as_millis()),
                ),
            )
            .await;
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::info!(%peer, "refused connection: {e}");
            send_error(
                &mut stream,
                frame_error_code(&e),
                format!("{e}; expected a Push hello frame"),
            )
            .await;
            return;
        }
        Ok(Ok(Some(f))) => f,
    };
    let hello: Hello = match (hello.kind, layout::decode_hello(&hello.payload)) {
        (Kind::Hello, Ok(h)) if h.magic == MAGIC => h,
        _ => {
            tracing::info!(%peer, "refused connection: not a Push hello");
            send_error(
                &mut stream,
                ErrorCode::BadFrame,
                "expected a Push hello frame; is this a Push client of the same version?".into(),
            )
            .await;
            return;
        }
    };
    let version = match format::negotiate(hello.protocol) {
        Ok(version) => version,
        Err(_) => {
            send_error(
                &mut stream,
                ErrorCode::VersionMismatch,
                format!(
                    "format mismatch: the client ({}) speaks formats up to {}, this node (push {}) speaks formats {} to {}; use a Push release that speaks format {} or later",
                    hello.client,
                    hello.protocol,
                    push_protocol::PUSH_VERSION,
                    push_protocol::MIN_FORMAT_VERSION,
                    push_protocol::format::highest(),
                    push_protocol::MIN_FORMAT_VERSION,
                ),
            )
            .await;
            return;
        }
    };
    let principal = match access::authenticate(&node, &hello.token, hello.role) {
        Ok(principal) => principal,
        Err(refused) => {
            tracing::warn!(%peer, client = %hello.client, "refused connection: {}", refused.message);
            send_error(&mut stream, refused.code, refused.message).await;
            return;
        }
    };
    let stage = match hello.role {
        Role::Client => Stage::Client,
        Role::Peer => Stage::Peer,
    };
    let _admitted = match waiting.promote(stage) {
        Ok(admitted) => admitted,
        Err(refused) => {
            tracing::info!(%peer, "refused connection: {refused}");
            send_error(&mut stream, ErrorCode::Unavailable, refused.to_string()).await;
            return;
        }
    };
    let welcome = Welcome {
        node_id: node.id,
        protocol: version,
        push_version: push_protocol::PUSH_VERSION.to_string(),
    };
    let bytes = layout::encode_welcome(&welcome);
    if frame::write_frame(&mut stream, Kind::Welcome, &bytes)
        .await
        .is_err()
    {
        return;
    }
    match hello.role {
        Role::Client => {
            // The cluster's own requests between nodes are not a person's: not audited.
            let from_node = matches!(principal, Principal::ClusterToken)
                && hello.client.starts_with(crate::NODE_CLIENT);
            let who = (!from_node).then(|| {
                let user = access::user_name(&node, &principal);
                Arc::<str>::from(format!("{user}: {} from {}", hello.client, peer.ip()))
            });
            client_loop(stream, peer, node, shutdown, principal, who, version).await
        }
        Role::Peer => peer_loop(stream, peer, node, shutdown, version).await,
    }
}

async fn peer_loop(
    mut stream: Stream,
    peer: SocketAddr,
    node: Arc<Node>,
    mut shutdown: Shutdown,
    version: u32,
) {
    loop {
        let frame = tokio::select! {
            _ = shutdown.wait() => return,
            f = frame::read_frame(&mut stream, MAX_PEER_FRAME) => f,
        };
        let frame = match frame {
            Ok(Some(f)) if f.kind == Kind::Raft => f,
            Ok(None) => return,
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Ok(Some(f)) => {
                send_error_in(
                    &mut stream,
                    version,
                    ErrorCode::BadFrame,
                    format!("unexpected {:?} frame on a peer connection", f.kind),
                )
                .await;
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, "peer connection: {e}");
                send_error_in(&mut stream, version, frame_error_code(&e), e.to_string()).await;
                return;
            }
        };
        let rpc: RaftRpc = match format::decode(version, &frame.payload) {
            Ok(rpc) => rpc,
            Err(e) => {
                send_error_in(
                    &mut stream,
                    version,
                    ErrorCode::BadFrame,
                    format!("undecodable raft rpc: {e}"),
                )
                .await;
                return;
            }
        };
        let reply = serve_rpc(&node.raft, node.state.blobs(), rpc).await;
        let Ok(bytes) = format::encode(version, &reply) else {
            return;
        };
        if frame::write_frame(&mut stream, Kind::RaftReply, &bytes)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Encodes one response frame in format `version`.
fn response(version: u32, id: u64, last: bool, outcome: &Outcome) -> Vec<u8> {
    let body = format::encode_outcome(version, outcome).unwrap_or_else(|e| {
        format::encode_outcome(
            version,
            &Outcome::Err(ErrorBody::new(ErrorCode::Internal, e.to_string())),
        )
        .unwrap_or_default()
    });
    frame::encode_frame(Kind::Response, &[&id.to_be_bytes(), &[last as u8], &body])
}

/// Intermediate replies of one request that may be queued or unwritten at once.
const STREAM_WINDOW: usize = 4;

/// Sends one intermediate reply; once more than [`STREAM_WINDOW`] are unwritten, waits until
/// the oldest is on the socket. False once the connection is gone.
async fn stream_out(
    replies: &Replies,
    frame: Vec<u8>,
    unwritten: &mut std::collections::VecDeque<oneshot::Receiver<()>>,
) -> bool {
    let (written, on_socket) = oneshot::channel();
    if !replies.send(frame, Some(written)) {
        return false;
    }
    unwritten.push_back(on_socket);
    if unwritten.len() > STREAM_WINDOW {
        if let Some(oldest) = unwritten.pop_front() {
            return oldest.await.is_ok();
        }
    }
    true
}

async fn client_loop(
    stream: Stream,
    peer: SocketAddr,
    node: Arc<Node>,
    mut shutdown: Shutdown,
    principal: Principal,
    who: Option<Arc<str>>,
    version: u32,
) {
    let (mut reader, writer) = tokio::io::split(stream);
    // Replies are written by whichever task has them (see `replies`): no writer task.
    let (tx, gone) = Replies::new(writer);
    loop {
        let frame = tokio::select! {
            _ = shutdown.wait() => break,
            f = async {
                tx.room().await;
                frame::read_frame(&mut reader, MAX_CLIENT_FRAME).await
            } => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // A TLS client that hung up without close_notify: an ordinary close.
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                tracing::info!(%peer, "closing client connection: {e}");
                let body = format::encode(
                    version,
                    &ErrorBody::new(frame_error_code(&e), format!("{e}; closing the connection")),
                )
                .unwrap_or_default();
                tx.send(frame::encode_frame(Kind::Error, &[&body]), None);
                break;
            }
        };
        if frame.kind != Kind::Request || frame.payload.len() < 8 {
            let body = format::encode(
                version,
                &ErrorBody::new(
                    ErrorCode::BadFrame,
                    format!(
                        "expected a request frame, got {:?} of {} bytes; closing the connection",
                        frame.kind,
                        frame.payload.len()
                    ),
                ),
            )
            .unwrap_or_default();
            tx.send(frame::encode_frame(Kind::Error, &[&body]), None);
            break;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&frame.payload[..8]);
        let id = u64::from_be_bytes(id);
        // A kind of request newer than the connection's format is what a node of that format
        // could not decode: answered the same way.
        let decoded = format::decode::<Op>(version, &frame.payload[8..])
            .map_err(|e| e.to_string())
            .and_then(|op| match format::introduced_in(&op) {
                needs if needs > version => Err(format!(
                    "a request of format {needs} on a connection of format {version}"
                )),
                _ => Ok(op),
            });
        let op: Op = match decoded {
            Ok(op) => op,
            Err(e) => {
                let outcome = Err(ErrorBody::new(
                    ErrorCode::UnknownOp,
                    format!("unknown or malformed request ({e}); this node runs push {} — is the client a different version?", push_protocol::PUSH_VERSION),
                ));
                if !tx.send(response(version, id, true, &outcome), None) {
                    break;
                }
                continue;
            }
        };
        // Checked once, here, before anything runs.
        let checked = std::time::Instant::now();
        let (answered, identity) = match access::authorize(&node, &principal, &op) {
            Err(refused) => (Some(Err(refused)), None),
            Ok(identity) if matches!(op, Op::WhoAmI) => (Some(Ok(Reply::WhoAmI(identity))), None),
            Ok(identity) => (None, Some(identity)),
        };
        let mut op = op;
        if let Some(identity) = &identity {
            access::scope_request(&principal, identity, &mut op);
        }
        if let Some(outcome) = answered {
            if let Err(refused) = &outcome {
                let kind = crate::metrics::op_kind(&op);
                crate::metrics::metrics().op(kind, false, checked.elapsed(), Some(refused.code));
            }
            if !tx.send(response(version, id, true, &outcome), None) {
                break;
            }
            continue;
        }
        let node = node.clone();
        let tx = tx.clone();
        let who = who.clone();
        tokio::spawn(async move {
            // Intermediate replies (eval output, backup chunks) go out in order, before the
            // final one. They are passed on by this same task while the request runs (no second
            // task per request), never more than a few ahead of what the socket took; whatever
            // is still queued when it ends goes out before the final reply.
            let (progress, mut updates) = mpsc::channel(STREAM_WINDOW);
            let mut unwritten = std::collections::VecDeque::new();
            let kind = crate::metrics::op_kind(&op);
            let forwarded = matches!(op, Op::Forwarded { .. });
            let started = std::time::Instant::now();
            let work = crate::ops::handle_streaming(&node, op, &progress, who.as_deref());
            tokio::pin!(work);
            let mut open = true;
            let outcome = loop {
                tokio::select! {
                    biased;
                    Some(reply) = updates.recv() => {
                        open = open && stream_out(&tx, response(version, id, false, &Ok(reply)), &mut unwritten).await;
                    }
                    outcome = &mut work => break outcome,
                }
            };
            while let Ok(reply) = updates.try_recv() {
                open = open
                    && stream_out(
                        &tx,
                        response(version, id, false, &Ok(reply)),
                        &mut unwritten,
                    )
                    .await;
            }
            let outcome = outcome.map(|reply| match &identity {
                Some(identity) => access::scope_reply(identity, reply),
                None => reply,
            });
            crate::metrics::metrics().op(
                kind,
                forwarded,
                started.elapsed(),
                outcome.as_ref().err().map(|e| e.code),
            );
            if open {
                tx.send(response(version, id, true, &outcome), None);
            }
        });
    }
    drop(tx);
    // Let queued replies (and a final error frame) go out before closing.
    let _ = tokio::time::timeout(Duration::from_secs(2), gone).await;
}
