//! What the Python runtime needs from the cluster, as a small interface it is handed when
//! the node is assembled: the runtime imports nothing of the node, the ops layer or the edge.
//!
//! **API Boundary:** the runtime talks to the cluster as a client does — it sends an [`Op`]
//! and gets a [`Reply`] — plus a few reads of this node's own applied state that a client
//! has no op for yet. In a worker process it is implemented over the Unix socket to the node
//! (`worker.rs`); on the node, by the ops layer (`ops::bridge`), which answers those calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use push_protocol::{ByteBuf, ErrorBody, Member, NodeStatus, Op, Outcome, TsPoint};

/// A future the cluster answers with.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cluster as the runtime sees it. Implemented above the runtime (by the ops layer).
pub trait Cluster: Send + Sync {
    /// Sends `op` as a client would: a follower forwards what the leader must do.
    fn call(&self, op: Op) -> Answer<'_, Outcome>;
    /// This node's status report (local, no Raft round).
    fn status(&self) -> Result<NodeStatus, ErrorBody>;
    /// The members as this node's Raft knows them.
    fn members(&self) -> Result<Vec<Member>, ErrorBody>;
    /// The files of version `number` of `app` in this node's applied state.
    #[allow(clippy::type_complexity)]
    fn version_files(
        &self,
        app: &str,
        number: u64,
    ) -> Result<Option<BTreeMap<String, ByteBuf>>, ErrorBody>;
    /// Where partition handler `unit` of `series` left off, in this node's applied state.
    fn ts_cursor(&self, series: &str, unit: &str) -> Result<u64, ErrorBody>;
    /// Up to `limit` points of one partition after `after`, waiting up to `wait` for some to
    /// be applied here.
    fn ts_after(
        &self,
        series: String,
        partition: u32,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Answer<'_, Result<Vec<TsPoint>, ErrorBody>>;
    /// One app `logging` record for the node's log (and `push logs`).
    fn log(&self, record: super::wire::AppLog) {
        crate::logs::app_event(
            record.levelno,
            &record.logger,
            &record.message,
            record.app.as_deref(),
            record.version,
            record.source.as_deref(),
        );
    }
}
