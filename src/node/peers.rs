//! Asking another member: the one way a node sends a request to another node, over cached
//! client connections (one per address, reopened when closed or when an answer is lost).
//!
//! Two uses: forwarding a request the leader must run ([`Node::forward`]), and asking a
//! given member something only it knows (an eval, its log lines: [`Node::ask`]). A forward
//! is retried only when it provably did not reach the leader (the connection could not be
//! opened); once sent, a lost answer is an unknown outcome, never a second attempt.

use std::sync::Arc;
use std::time::Duration;

use push_protocol::{Client, ClientError, ErrorBody, ErrorCode, Op, Outcome, Reply};

use super::Node;

/// Why a forward did not produce an answer.
pub enum ForwardError {
    /// Never reached the leader: safe to retry.
    NotSent(String),
    /// Reached it (or may have): report, do not retry.
    Failed(ErrorBody),
}

impl Node {
    /// The cached connection to `addr`, opened if there is none (or it closed).
    async fn peer(&self, addr: &str) -> Result<Arc<Client>, ClientError> {
        let mut peers = self.peers.lock().await;
        match peers.get(addr) {
            Some(c) if !c.is_closed() => Ok(c.clone()),
            _ => {
                let c = Arc::new(Client::connect_as(addr, &self.token, crate::NODE_CLIENT).await?);
                peers.insert(addr.to_string(), c.clone());
                Ok(c)
            }
        }
    }

    /// Forgets the connection to `addr`: a paused or cut-off peer gets a new one next time.
    async fn drop_peer(&self, addr: &str) {
        self.peers.lock().await.remove(addr);
    }

    /// Sends `op` to the leader advertised at `advertised` as a forward of `hops` hops.
    pub async fn forward(
        &self,
        advertised: &str,
        op: &Op,
        hops: u8,
    ) -> Result<Reply, ForwardError> {
        let dial = self.dial_advertised(advertised);
        let addr = dial.as_str();
        let client = self
            .peer(addr)
            .await
            .map_err(|e| ForwardError::NotSent(e.to_string()))?;
        let forwarded = Op::Forwarded {
            hops,
            op: Box::new(op.clone()),
        };
        let limit = forward_limit(op);
        let Ok(answer) = tokio::time::timeout(limit, client.call(forwarded)).await else {
            // A paused or cut-off leader: stop waiting; a new leader gets a new connection.
            self.drop_peer(addr).await;
            return Err(ForwardError::Failed(ErrorBody::new(
                ErrorCode::Unavailable,
                format!("the leader at {addr} did not answer within {} s; the outcome is unknown — check with a read before retrying, and `push status` for the cluster", limit.as_secs()),
            )));
        };
        match answer {
            Ok(reply) => Ok(reply),
            Err(ClientError::Server(body)) => Err(ForwardError::Failed(body)),
            Err(e) => {
                self.drop_peer(addr).await;
                Err(ForwardError::Failed(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!("lost the connection to the leader at {addr} while it handled the request ({e}); the outcome is unknown — check before retrying"),
                )))
            }
        }
    }

    /// Sends `op` to the leader advertised at `advertised` as a forward of `hops` hops and
    /// returns its reply frames as they arrive (a backup's stream). Refused before sending
    /// when the leader speaks a format older than `needs` (it could not decode `op`).
    pub async fn forward_stream(
        &self,
        advertised: &str,
        op: &Op,
        hops: u8,
        needs: u32,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Outcome>, ForwardError> {
        let dial = self.dial_advertised(advertised);
        let addr = dial.as_str();
        let client = self
            .peer(addr)
            .await
            .map_err(|e| ForwardError::NotSent(e.to_string()))?;
        let theirs = client.welcome().protocol;
        if theirs < needs {
            return Err(ForwardError::Failed(ErrorBody::new(
                ErrorCode::VersionMismatch,
                format!("the leader at {addr} speaks format {theirs}; this request needs format {needs} (this node speaks up to {}): upgrade the leader first", push_protocol::FORMAT_VERSION),
            )));
        }
        let forwarded = Op::Forwarded {
            hops,
            op: Box::new(op.clone()),
        };
        match client.call_stream(forwarded).await {
            Ok(replies) => Ok(replies),
            Err(e) => {
                self.drop_peer(addr).await;
                Err(ForwardError::NotSent(e.to_string()))
            }
        }
    }

    /// Asks member `id` to answer `op` itself, within `limit`.
    pub async fn ask(&self, id: u64, op: Op, limit: Duration) -> Outcome {
        let Some(addr) = self
            .members()
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| self.dial_addr(m.id, &m.addr))
        else {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("node {id} is not a member"),
            ));
        };
        let unavailable = |e: String| ErrorBody::new(ErrorCode::Unavailable, e);
        let ask = async {
            let client = self
                .peer(&addr)
                .await
                .map_err(|e| unavailable(format!("{addr}: {e}")))?;
            client.call(op).await.map_err(|e| match e {
                ClientError::Server(body) => body,
                e => unavailable(format!("{addr}: {e}")),
            })
        };
        match tokio::time::timeout(limit, ask).await {
            Ok(Err(e)) if e.code == ErrorCode::Unavailable => {
                self.drop_peer(&addr).await;
                Err(e)
            }
            Ok(outcome) => outcome,
            Err(_) => {
                self.drop_peer(&addr).await;
                Err(unavailable(format!(
                    "{addr}: no answer within {}s",
                    limit.as_secs()
                )))
            }
        }
    }
}

/// How long a follower waits for the leader to answer a forwarded request: long enough for
/// the slowest legitimate work (a deploy's import check, a join's catch-up, a queue take's own
/// wait), short enough that a paused or partitioned leader cannot hold a client forever.
fn forward_limit(op: &Op) -> Duration {
    match op {
        Op::Commit { .. } | Op::Join { .. } | Op::JoinLearner { .. } | Op::Promote { .. } => {
            Duration::from_secs(120)
        }
        Op::Audited { op, .. } => forward_limit(op),
        Op::QueueTake { wait_ms, .. } => {
            Duration::from_millis(*wait_ms).saturating_add(Duration::from_secs(10))
        }
        _ => Duration::from_secs(10),
    }
}

pub use crate::join::concurrently;
