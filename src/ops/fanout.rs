//! Asking several members the same question at once — this node directly, the others
//! through [`Node::ask`] — and collecting the answers by node id.

use std::future::Future;
use std::time::Duration;

use push_protocol::{Op, Outcome};

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
    let asks = futures_of(others.map(|id| {
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

/// Runs `futures` concurrently on this task and collects their outputs.
async fn futures_of<T>(futures: impl Iterator<Item = impl Future<Output = T>>) -> Vec<T> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut done = Vec::with_capacity(pending.len());
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => {
                done.push(out);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done
}
