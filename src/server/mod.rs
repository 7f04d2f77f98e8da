//! The node's one TCP address: accept loop, per-connection handling, request dispatch.
//!
//! **API Boundary:** everything that arrives from the network enters here. A connection first
//! proves it knows the cluster token; malformed or oversized input gets an error frame and
//! closes only that connection.

pub mod audit;
pub mod auth;
pub mod connection;
pub mod dispatch;
pub mod http;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::node::Node;
use crate::shutdown::Shutdown;

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, node: Arc<Node>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let node = node.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
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
