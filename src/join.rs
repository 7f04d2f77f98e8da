//! Waiting on several futures at once on one task (a fan-out's asks, a load into every
//! worker), without a dependency for it.

use std::future::Future;

/// Runs `futures` concurrently on this task and collects their outputs, in the order they
/// finish.
pub async fn concurrently<T>(futures: impl Iterator<Item = impl Future<Output = T>>) -> Vec<T> {
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
