//! Frames out on one end of a node↔worker socket: a frame is written at once, from whichever
//! thread sends it (a request's task, a Python thread), while the socket takes it; what it
//! does not take waits in a queue that one flusher task writes out, in order, as the socket
//! drains. The common case — a small frame and a socket with room — costs one `write` and no
//! hand-off to another task or thread.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};

use tokio::net::unix::OwnedWriteHalf;

/// Where frames for the other end go; clones share the socket and its queue. The write half
/// closes (the other end reads its end) once every clone and the flusher are gone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    half: OwnedWriteHalf,
    state: Mutex<State>,
    /// Where the flusher runs (senders may be threads outside the runtime).
    handle: tokio::runtime::Handle,
}

#[derive(Default)]
struct State {
    /// Bytes the socket has not taken yet, in order.
    queued: Vec<u8>,
    /// A flusher task is writing `queued` out: senders only append.
    flushing: bool,
    /// A write failed: the other end is gone, nothing more is sent.
    broken: bool,
}

impl Outbox {
    /// An outbox on `half`; called inside the tokio runtime that will flush it.
    pub fn new(half: OwnedWriteHalf) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                half,
                state: Mutex::new(State::default()),
                handle: tokio::runtime::Handle::current(),
            }),
        }
    }

    /// Sends `bytes` (whole frames, as [`super::wire::encode`] makes them) after everything
    /// sent before. False once the socket has failed.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.broken {
            return false;
        }
        if state.flushing {
            state.queued.extend_from_slice(&bytes);
            return true;
        }
        let mut at = 0;
        while at < bytes.len() {
            match self.inner.half.try_write(&bytes[at..]) {
                Ok(0) => {
                    state.broken = true;
                    return false;
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    state.broken = true;
                    return false;
                }
            }
        }
        if at < bytes.len() {
            state.queued.extend_from_slice(&bytes[at..]);
            state.flushing = true;
            self.inner.handle.spawn(flush(self.inner.clone()));
        }
        true
    }
}

/// Writes the queue out as the socket drains, until it is empty (then senders write
/// directly again) or the socket fails.
async fn flush(inner: Arc<Inner>) {
    loop {
        let chunk = {
            let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.queued.is_empty() {
                state.flushing = false;
                return;
            }
            std::mem::take(&mut state.queued)
        };
        let mut at = 0;
        while at < chunk.len() {
            let written = match inner.half.writable().await {
                Ok(()) => inner.half.try_write(&chunk[at..]),
                Err(e) => Err(e),
            };
            match written {
                Ok(n) if n > 0 => at += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                _ => {
                    let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
                    state.broken = true;
                    state.flushing = false;
                    state.queued = Vec::new();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Frames far bigger than the socket's buffer, sent from several threads while the
    /// reader is slow, arrive whole and in each sender's order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_arrive_whole_and_in_order_when_the_socket_fills() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (_a_read, a_write) = a.into_split();
        let outbox = Outbox::new(a_write);
        let senders: Vec<_> = (0u8..3)
            .map(|t| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    for i in 0u8..50 {
                        // [thread, i, then 20 KiB of i]
                        let mut frame = vec![t, i];
                        frame.extend(std::iter::repeat_n(i, 20_000));
                        assert!(outbox.send(frame));
                    }
                })
            })
            .collect();
        drop(outbox);
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
            s.join().unwrap();
        }
        // Every sender and the flusher gone: the reader sees the end.
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_closed_other_end_makes_sends_fail() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (_a_read, a_write) = a.into_split();
        let outbox = Outbox::new(a_write);
        drop(b);
        let mut failed = false;
        for _ in 0..100 {
            if !outbox.send(vec![0; 1024]) {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed);
    }
}
