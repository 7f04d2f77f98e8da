//! Asking several members the same question at once — this node directly, the others
//! through [`Node::ask`] — and collecting the answers by node id.

use std::future::Future;
use std::time::Duration;

use push_protocol::{Op, Outcome};

use crate::node::peers::concurrently;
use crate::node::Node;

/// Asks each of `targets` (node ids) `op` — this node through `local` — within `limit`
/// each, and returns the answers sorted by node id.
pub async fn fan_out<F, Fut>(
    node: &Node,
    targets: &[u64],
    op: Op,
    limit: Duration,
    local: F,
) -> Vec<(u64, Outcome)>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let others = targets.iter().copied().filter(|id| *id != node.id);
    let asks = concurrently(others.map(|id| {
        let op = op.clone();
        async move { (id, node.ask(id, op, limit).await) }
    }));
    let here = async {
        if targets.contains(&node.id) {
            Some((node.id, local().await))
        } else {
            None
        }
    };
    let (here, mut results) = tokio::join!(here, asks);
    results.extend(here);
    results.sort_by_key(|(id, _)| *id);
    results
}
