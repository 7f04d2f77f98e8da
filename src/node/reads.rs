//! Shared leadership confirmations for linearizable reads: reads that arrive while one
//! confirmation round is in flight wait for the next round and all return on its answer, as
//! etcd's read index batches them, instead of each sending its own round of heartbeats.
//!
//! Why it is safe: a reader may return on a round only if that round *started after the
//! reader arrived*. Such a round confirmed leadership at a commit index at least as new as
//! anything committed before the reader arrived, and waited for it to be applied — exactly what
//! the reader's own round would have given it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rounds of confirmation, one at a time, shared by the reads that wait for them.
#[derive(Default)]
pub struct ReadBarrier {
    /// Rounds started so far: a round's ticket is the count when it started.
    started: AtomicU64,
    /// The ticket of the newest round that confirmed.
    confirmed: AtomicU64,
    /// One round at a time; readers queue here, and most find a newer round already done.
    round: tokio::sync::Mutex<()>,
}

impl ReadBarrier {
    /// Returns once a round that started after this call confirmed: either one already run
    /// by another reader while this one waited, or `confirm` run now. `confirm`'s error is
    /// returned to this caller only; the next waiter runs its own round.
    pub async fn confirmed<F, Fut, E>(&self, confirm: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let arrived = self.started.load(Ordering::SeqCst);
        let _round = self.round.lock().await;
        if self.confirmed.load(Ordering::SeqCst) > arrived {
            return Ok(());
        }
        let ticket = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        confirm().await?;
        self.confirmed.fetch_max(ticket, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_rounds() {
        let barrier = Arc::new(ReadBarrier::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for _ in 0..64 {
            let (barrier, rounds) = (barrier.clone(), rounds.clone());
            readers.push(tokio::spawn(async move {
                barrier
                    .confirmed(|| async {
                        rounds.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<(), ()>(())
                    })
                    .await
            }));
        }
        for r in readers {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
        let rounds = rounds.load(Ordering::SeqCst);
        assert!((1..64).contains(&rounds), "{rounds} rounds for 64 reads");
    }

    #[tokio::test]
    async fn a_read_never_returns_on_a_round_that_started_before_it() {
        let barrier = Arc::new(ReadBarrier::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let (began, running) = tokio::sync::oneshot::channel::<()>();
        // A round starts and stays in flight.
        let first = {
            let (barrier, rounds) = (barrier.clone(), rounds.clone());
            tokio::spawn(async move {
                barrier
                    .confirmed(|| async move {
                        rounds.fetch_add(1, Ordering::SeqCst);
                        began.send(()).unwrap();
                        held.await.unwrap();
                        Ok::<(), ()>(())
                    })
                    .await
            })
        };
        running.await.unwrap();
        // A read arriving now must not take that round's answer: it runs one of its own.
        let second = {
            let (barrier, rounds) = (barrier.clone(), rounds.clone());
            tokio::spawn(async move {
                barrier
                    .confirmed(|| async move {
                        rounds.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), ()>(())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(second.await.unwrap(), Ok(()));
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_round_fails_only_its_own_reader() {
        let barrier = ReadBarrier::default();
        assert_eq!(
            barrier.confirmed(|| async { Err::<(), _>("lost") }).await,
            Err("lost")
        );
        // Nothing confirmed: the next reader runs its own round.
        let mut ran = false;
        barrier
            .confirmed(|| {
                ran = true;
                async { Ok::<(), ()>(()) }
            })
            .await
            .unwrap();
        assert!(ran);
    }
}
