//! What the Python runtime needs from the cluster, as a small interface it is handed when
//! the node is assembled: the runtime imports nothing of the node, the ops layer or the edge.
//!
//! **API Boundary:** the runtime talks to the cluster as a client does — it sends an [`Op`]
//! and gets a [`Reply`] — plus a few reads of this node's own applied state that a client
//! has no op for yet. When Python moves into worker processes, this trait becomes a client
//! of the node's Unix socket.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use push_protocol::{ByteBuf, Member, NodeStatus, Op, Outcome, TsPoint};

/// A future the cluster answers with.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cluster as the runtime sees it. Implemented above the runtime (by the ops layer).
pub trait Cluster: Send + Sync {
    /// Sends `op` as a client would: a follower forwards what the leader must do.
    fn call(&self, op: Op) -> Answer<'_, Outcome>;
    /// This node's status report (local, no Raft round).
    fn status(&self) -> NodeStatus;
    /// The members as this node's Raft knows them.
    fn members(&self) -> Vec<Member>;
    /// The files of version `number` of `app` in this node's applied state.
    fn version_files(&self, app: &str, number: u64) -> Option<BTreeMap<String, ByteBuf>>;
    /// Where partition handler `unit` of `series` left off, in this node's applied state.
    fn ts_cursor(&self, series: &str, unit: &str) -> u64;
    /// Up to `limit` points of one partition after `after`, waiting up to `wait` for some to
    /// be applied here.
    fn ts_after(
        &self,
        series: String,
        partition: u32,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Answer<'_, Vec<TsPoint>>;
}
