//! The node's network edge: the accept loop, per-connection handling (which hands each
//! request to `ops`), the app HTTP front and its `/metrics` page.
//!
//! **API Boundary:** everything that arrives from the network enters here. A connection first
//! proves it knows the cluster token or a user's secret, and every request is checked against
//! the user's role (`access`) before anything runs; malformed or oversized input gets an error frame and
//! closes only that connection.

pub mod access;
pub mod auth;
pub mod channels;
pub mod connection;
pub mod http;
pub mod limits;
pub mod metrics_page;
pub mod replies;
pub mod streaming;

use std::sync::Arc;

use push_protocol::tls::Stream;
use tokio::net::TcpListener;

use crate::node::Node;
use crate::shutdown::Shutdown;

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Refuses a connection at once: one error frame if the socket takes it now, then close.
fn refuse(stream: tokio::net::TcpStream, refused: &limits::Refused) {
    let body =
        push_protocol::ErrorBody::new(push_protocol::ErrorCode::Unavailable, refused.to_string());
    // Before any hello: the handshake's frozen layout, which every release reads.
    let bytes = push_protocol::format::handshake::encode_refusal(&body);
    let frame = push_protocol::frame::encode_frame(push_protocol::frame::Kind::Error, &[&bytes]);
    let _ = stream.try_write(&frame);
}

/// Accepts connections until shutdown; with `tls`, every connection must speak TLS first.
/// `limits` bounds how many wait for their hello and how many clients and peers stay.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    mut shutdown: Shutdown,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Arc<limits::Limits>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut errors = limits::AcceptErrors::new("node");
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    errors.succeeded();
                    let waiting = match limits.node.admit(peer.ip()) {
                        Ok(w) => w,
                        Err(refused) => {
                            tracing::debug!(%peer, "refused connection: {refused}");
                            refuse(stream, &refused);
                            continue;
                        }
                    };
                    stream.set_nodelay(true).ok();
                    let node = node.clone();
                    let shutdown = shutdown.clone();
                    let acceptor = acceptor.clone();
                    let hello_timeout = limits.settings.hello_timeout;
                    tokio::spawn(async move {
                        let stream: Stream = match acceptor {
                            None => Box::new(stream),
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                                let handshake = tokio::select! {
                                    _ = waiting.evicted() => return,
                                    h = handshake => h,
                                };
                                match handshake {
                                    Ok(Ok(tls)) => Box::new(tls),
                                    Ok(Err(e)) => {
                                        tracing::warn!(%peer, "refused connection: TLS handshake failed ({e}); clients need --tls-ca");
                                        return;
                                    }
                                    Err(_) => {
                                        waiting.port().closed("deadline");
                                        tracing::warn!(%peer, "refused connection: no TLS handshake within 10 s");
                                        return;
                                    }
                                }
                            }
                        };
                        connection::handle(stream, peer, node, shutdown, waiting, hello_timeout).await;
                    });
                }
                Err(e) => errors.failed(&e).await,
            }
        }
    }
}
