//! The cluster as the Python runtime sees it: [`NodeCluster`] implements the runtime's
//! [`Cluster`] interface over a node, sending each op down through [`super::handle`] exactly
//! as a network client's request goes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use push_protocol::{ByteBuf, ErrorBody, Member, NodeStatus, Op, Outcome, TsPoint};

use crate::node::Node;
use crate::runtime::cluster::{Answer, Cluster};

/// A node, handed to the runtime at assembly.
pub struct NodeCluster(pub Arc<Node>);

impl Cluster for NodeCluster {
    fn call(&self, op: Op) -> Answer<'_, Outcome> {
        Box::pin(super::handle(&self.0, op))
    }

    fn status(&self) -> Result<NodeStatus, ErrorBody> {
        Ok(self.0.status())
    }

    fn members(&self) -> Result<Vec<Member>, ErrorBody> {
        Ok(self.0.members())
    }

    fn version_files(
        &self,
        app: &str,
        number: u64,
    ) -> Result<Option<BTreeMap<String, ByteBuf>>, ErrorBody> {
        let Ok((_, tree)) = self.0.read(|s| s.code.tree(app, Some(number))) else {
            return Ok(None);
        };
        // Called off the async threads (a worker's or Python's own): the files are read here.
        let tree = tree
            .into_iter()
            .filter(|(path, _)| !crate::model::code_store::is_wheel_path(path))
            .collect();
        let files = self.0.state.read_tree(tree).map_err(|(path, e)| {
            ErrorBody::new(
                push_protocol::ErrorCode::Unavailable,
                format!("{path}: {e}"),
            )
        })?;
        Ok(Some(files))
    }

    fn ts_cursor(&self, series: &str, unit: &str) -> Result<u64, ErrorBody> {
        Ok(self
            .0
            .read(|s| s.timeseries.get(series).map_or(0, |x| x.cursor(unit))))
    }

    fn ts_after(
        &self,
        series: String,
        partition: u32,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Answer<'_, Result<Vec<TsPoint>, ErrorBody>> {
        let node = &self.0;
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            let mut applied = node.state.subscribe();
            loop {
                let points = node.read(|s| {
                    s.timeseries
                        .get(&series)
                        .map(|x| x.after(partition, after, limit))
                        .unwrap_or_default()
                });
                if !points.is_empty() || tokio::time::Instant::now() >= deadline {
                    return Ok(points);
                }
                let _ = tokio::time::timeout_at(deadline, applied.changed()).await;
            }
        })
    }
}
