//! Reply frames out on one client connection: a frame is written at once by the task that has
//! it (a request's task, the read loop) while the socket takes it; what it does not take waits
//! in a queue that one flusher task writes out, in order, as the socket drains. The common
//! case — a small reply and a socket with room — costs one write and no hand-off to another
//! task. Works the same over plain TCP and TLS (the stream is only known as `AsyncWrite`).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use push_protocol::tls::Stream;
use tokio::io::{AsyncWrite, WriteHalf};
use tokio::sync::{oneshot, Notify};

/// Frames queued behind a full socket past which the read loop stops reading requests (a
/// client that sends without reading cannot make the node hold its replies without bound).
pub const BACKLOG: usize = 1024;

/// Where a connection's reply frames go; clones share the socket and its queue. The write half
/// is dropped once every clone and the flusher are gone, which [`Replies::gone`] reports.
#[derive(Clone)]
pub struct Replies {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Told each time the flusher has written queued frames out.
    drained: Notify,
    /// Dropped with the last clone: tells [`Gone`] that everything sent has been written.
    _gone: oneshot::Sender<()>,
}

/// Completes once every [`Replies`] clone and its flusher are gone (every frame written out,
/// or the socket failed).
pub type Gone = oneshot::Receiver<()>;

/// A frame the socket has not wholly taken yet, and whom to tell once it has.
struct Queued {
    bytes: Vec<u8>,
    at: usize,
    written: Option<oneshot::Sender<()>>,
}

struct State {
    half: WriteHalf<Stream>,
    /// Frames not wholly taken yet, in order.
    queued: VecDeque<Queued>,
    /// A flusher task owns the writing: senders only append.
    flushing: bool,
    /// A write failed: the client is gone, nothing more is sent.
    broken: bool,
}

/// What one write attempt came to.
enum Wrote {
    All,
    Partly(usize),
    Failed,
}

/// Writes what the socket takes now of `bytes` without waiting, polling with `cx`.
fn write_now(half: &mut WriteHalf<Stream>, bytes: &[u8], cx: &mut Context<'_>) -> Wrote {
    let mut at = 0;
    while at < bytes.len() {
        match Pin::new(&mut *half).poll_write(cx, &bytes[at..]) {
            Poll::Ready(Ok(0)) => return Wrote::Failed,
            Poll::Ready(Ok(n)) => at += n,
            Poll::Ready(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Poll::Ready(Err(_)) => return Wrote::Failed,
            Poll::Pending => return Wrote::Partly(at),
        }
    }
    Wrote::All
}

impl Replies {
    /// A writer on `half`; called inside the tokio runtime that will flush it.
    pub fn new(half: WriteHalf<Stream>) -> (Replies, Gone) {
        let (gone_tx, gone) = oneshot::channel();
        let state = State {
            half,
            queued: VecDeque::new(),
            flushing: false,
            broken: false,
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            drained: Notify::new(),
            _gone: gone_tx,
        });
        (Replies { inner }, gone)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while more than [`BACKLOG`] frames wait for the socket.
    pub async fn room(&self) {
        loop {
            let drained = self.inner.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let state = self.lock();
                if state.broken || state.queued.len() <= BACKLOG {
                    return;
                }
            }
            drained.await;
        }
    }

    /// Sends one whole frame after everything sent before; `written` is told once the socket
    /// has taken all of it. False once the connection has failed.
    pub fn send(&self, bytes: Vec<u8>, written: Option<oneshot::Sender<()>>) -> bool {
        let mut state = self.lock();
        if state.broken {
            return false;
        }
        if state.flushing {
            state.queued.push_back(Queued {
                bytes,
                at: 0,
                written,
            });
            return true;
        }
        // Polled without a task to wake: a write that would block is handed to the flusher,
        // whose own poll registers for the socket's readiness.
        let mut cx = Context::from_waker(Waker::noop());
        let at = match write_now(&mut state.half, &bytes, &mut cx) {
            Wrote::Failed => {
                state.broken = true;
                return false;
            }
            Wrote::All => {
                // TLS may hold some of it until flushed; plain TCP flushes at once.
                match Pin::new(&mut state.half).poll_flush(&mut cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(written) = written {
                            let _ = written.send(());
                        }
                        return true;
                    }
                    Poll::Ready(Err(_)) => {
                        state.broken = true;
                        return false;
                    }
                    Poll::Pending => bytes.len(),
                }
            }
            Wrote::Partly(at) => at,
        };
        state.queued.push_back(Queued { bytes, at, written });
        state.flushing = true;
        drop(state);
        tokio::spawn(flush(self.clone()));
        true
    }

    /// Writes the queue out as the socket drains, then flushes, until the queue is empty
    /// (then senders write directly again) or the socket fails.
    fn poll_flush_queue(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        let state = &mut *state;
        let before = state.queued.len();
        let polled = self.write_queue(state, cx);
        if state.queued.len() < before || polled.is_ready() {
            self.inner.drained.notify_waiters();
        }
        polled
    }

    fn write_queue(&self, state: &mut State, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(front) = state.queued.front_mut() {
            match write_now(&mut state.half, &front.bytes[front.at..], cx) {
                Wrote::Failed => return fail(state),
                Wrote::Partly(n) => {
                    front.at += n;
                    return Poll::Pending;
                }
                Wrote::All => {
                    if let Some(done) = state.queued.pop_front() {
                        if let Some(written) = done.written {
                            let _ = written.send(());
                        }
                    }
                }
            }
        }
        match Pin::new(&mut state.half).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                state.flushing = false;
                Poll::Ready(())
            }
            Poll::Ready(Err(_)) => fail(state),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Marks the connection failed and drops what was queued (its waiters learn it by the drop).
fn fail(state: &mut State) -> Poll<()> {
    state.broken = true;
    state.flushing = false;
    state.queued.clear();
    Poll::Ready(())
}

async fn flush(replies: Replies) {
    poll_fn(|cx| replies.poll_flush_queue(cx)).await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Frames far bigger than the socket's buffer, sent from several tasks while the reader is
    /// slow, arrive whole and in each sender's order; each sender hears when its frame is out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_arrive_whole_and_in_order_when_the_socket_fills() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (_a_read, a_write) = tokio::io::split(Box::new(a) as Stream);
        let (replies, gone) = Replies::new(a_write);
        let senders: Vec<_> = (0u8..3)
            .map(|t| {
                let replies = replies.clone();
                tokio::spawn(async move {
                    let mut acks = Vec::new();
                    for i in 0u8..50 {
                        // [sender, i, then 20 KiB of i]
                        let mut frame = vec![t, i];
                        frame.extend(std::iter::repeat_n(i, 20_000));
                        let (tx, rx) = oneshot::channel();
                        assert!(replies.send(frame, Some(tx)));
                        acks.push(rx);
                        tokio::task::yield_now().await;
                    }
                    for ack in acks {
                        ack.await.unwrap();
                    }
                })
            })
            .collect();
        drop(replies);
        let mut b = b;
        let mut next = [0u8; 3];
        let mut frame = vec![0u8; 20_002];
        for _ in 0..150 {
            b.read_exact(&mut frame).await.unwrap();
            let (t, i) = (frame[0] as usize, frame[1]);
            assert_eq!(i, next[t], "sender {t}'s frames out of order");
            assert!(frame[2..].iter().all(|&x| x == i), "a frame was torn");
            next[t] += 1;
        }
        for s in senders {
            s.await.unwrap();
        }
        // Every clone and the flusher gone: `gone` says so.
        assert!(gone.await.is_err());
    }

    #[tokio::test]
    async fn a_closed_other_end_makes_sends_fail() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (_a_read, a_write) = tokio::io::split(Box::new(a) as Stream);
        let (replies, _gone) = Replies::new(a_write);
        drop(b);
        let mut failed = false;
        for _ in 0..100 {
            if !replies.send(vec![0; 1024], None) {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed);
    }
}
