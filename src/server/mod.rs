//! The node's network edge: the accept loop, per-connection handling (which hands each
//! request to `ops`), the app HTTP front and its `/metrics` page.
//!
//! **API Boundary:** everything that arrives from the network enters here. A connection first
//! proves it knows the cluster token; malformed or oversized input gets an error frame and
//! closes only that connection.

pub mod auth;
pub mod connection;
pub mod http;
pub mod metrics_page;

use std::sync::Arc;

use push_protocol::tls::Stream;
use tokio::net::TcpListener;

use crate::node::Node;
use crate::shutdown::Shutdown;

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections until shutdown; with `tls`, every connection must speak TLS first.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    mut shutdown: Shutdown,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    stream.set_nodelay(true).ok();
                    let node = node.clone();
                    let shutdown = shutdown.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let stream: Stream = match acceptor {
                            None => Box::new(stream),
                            Some(acceptor) => {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => Box::new(tls),
                                    Ok(Err(e)) => {
                                        tracing::warn!(%peer, "refused connection: TLS handshake failed ({e}); clients need --tls-ca");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::warn!(%peer, "refused connection: no TLS handshake within 10 s");
                                        return;
                                    }
                                }
                            }
                        };
                        connection::handle(stream, peer, node, shutdown).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}
