//! A userspace TCP fault proxy, one per directed link between two nodes, that a test switches
//! between passing, dropping (closing) and blackholing (accepting but never forwarding)
//! connections — the way etcd's robustness suite partitions a cluster without root or netem.
//!
//! Each node dials peer `j` through its own proxy (`push node --peer-via j=PROXY`), so a test
//! controls every directed link: [`FaultNet::isolate`] cuts one node's inbound and outbound
//! peer links. The proxies run on their own runtime thread, so they keep working while the
//! test's runtime is busy or blocked.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes both ways.
    Pass,
    /// Close every connection, open or new.
    Drop,
    /// Accept and keep connections open, read and discard their bytes, forward nothing; when
    /// the mode changes again they are closed (a half-delivered stream cannot resume).
    Blackhole,
}

/// One proxy: listens on `addr`, forwards to its target according to its mode.
pub struct Proxy {
    pub addr: String,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    /// Starts a proxy to `target` on a free loopback port, on `rt`.
    pub fn start(rt: &tokio::runtime::Handle, target: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let (mode, watch_rx) = watch::channel(Mode::Pass);
        let target_owned = target.to_string();
        rt.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(pipe(client, target_owned.clone(), watch_rx.clone()));
            }
        });
        Proxy { addr, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

/// Serves one accepted connection until it closes or the mode says otherwise.
async fn pipe(client: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Drop => return,
        Mode::Blackhole => return hold(client, None, mode).await,
        Mode::Pass => {}
    }
    let upstream =
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&target)).await {
            Ok(Ok(s)) => s,
            _ => return,
        };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let mut a = vec![0u8; 64 << 10];
    let mut b = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            n = cr.read(&mut a) => match n {
                Ok(n) if n > 0 => if uw.write_all(&a[..n]).await.is_err() { return },
                _ => return,
            },
            n = ur.read(&mut b) => match n {
                Ok(n) if n > 0 => if cw.write_all(&b[..n]).await.is_err() { return },
                _ => return,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *mode.borrow_and_update();
                match now {
                    Mode::Pass => {}
                    Mode::Drop => return,
                    Mode::Blackhole => {
                        let client = cr.reunite(cw).expect("same stream");
                        let upstream = ur.reunite(uw).expect("same stream");
                        return hold(client, Some(upstream), mode).await;
                    }
                }
            }
        }
    }
}

/// Keeps connections open, swallowing what arrives, until the mode changes (then closes).
async fn hold(mut client: TcpStream, upstream: Option<TcpStream>, mut mode: watch::Receiver<Mode>) {
    let mut sink = vec![0u8; 64 << 10];
    let mut sink2 = vec![0u8; 64 << 10];
    let mut upstream = upstream;
    let mut client_open = true;
    loop {
        tokio::select! {
            n = client.read(&mut sink), if client_open => {
                if !matches!(n, Ok(n) if n > 0) { client_open = false; }
            }
            n = async { match upstream.as_mut() { Some(u) => u.read(&mut sink2).await, None => std::future::pending().await } } => {
                if !matches!(n, Ok(n) if n > 0) { upstream = None; }
            }
            _ = mode.changed() => return,
        }
    }
}

/// Proxies for every directed link of a cluster, on their own runtime.
pub struct FaultNet {
    rt: Option<tokio::runtime::Runtime>,
    /// (from, to) -> the proxy `from` dials `to` through.
    links: BTreeMap<(u64, u64), Proxy>,
}

impl FaultNet {
    /// A proxy for each ordered pair of `nodes` (id, advertised address).
    pub fn new(nodes: &[(u64, String)]) -> FaultNet {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let mut links = BTreeMap::new();
        for (from, _) in nodes {
            for (to, addr) in nodes {
                if from != to {
                    links.insert((*from, *to), Proxy::start(rt.handle(), addr));
                }
            }
        }
        FaultNet {
            rt: Some(rt),
            links,
        }
    }

    /// The `--peer-via` flags node `from` needs.
    pub fn flags_for(&self, from: u64) -> Vec<String> {
        self.links
            .iter()
            .filter(|((f, _), _)| *f == from)
            .flat_map(|((_, to), p)| ["--peer-via".to_string(), format!("{to}={}", p.addr)])
            .collect()
    }

    /// Sets the link `from` -> `to`.
    pub fn set(&self, from: u64, to: u64, mode: Mode) {
        if let Some(p) = self.links.get(&(from, to)) {
            p.set(mode);
        }
    }

    /// Cuts node `id` off from every other node, both directions.
    pub fn isolate(&self, id: u64, mode: Mode) {
        for ((from, to), p) in &self.links {
            if *from == id || *to == id {
                p.set(mode);
            }
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for p in self.links.values() {
            p.set(Mode::Pass);
        }
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on its own thread; returns its address.
    fn echo_server() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    use std::io::{Read, Write};
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `msg` and waits up to `within` for the echo; None when nothing came back, or
    /// Some(empty) when the connection was closed.
    async fn echo(stream: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
        if stream.write_all(msg).await.is_err() {
            return Some(Vec::new());
        }
        let mut buf = vec![0u8; msg.len()];
        match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            Ok(Err(_)) => Some(Vec::new()),
            Err(_) => None,
        }
    }

    fn net() -> (FaultNet, String) {
        let target = echo_server();
        let net = FaultNet::new(&[(1, "unused".into()), (2, target.clone())]);
        let via = net.links[&(1, 2)].addr.clone();
        (net, via)
    }

    #[tokio::test]
    async fn pass_forwards_and_drop_closes_open_and_new_connections() {
        let (net, via) = net();
        let mut s = TcpStream::connect(&via).await.expect("connect");
        let short = Duration::from_millis(500);
        assert_eq!(
            echo(&mut s, b"hello", short).await.as_deref(),
            Some(&b"hello"[..])
        );

        net.set(1, 2, Mode::Drop);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            echo(&mut s, b"x", short).await,
            Some(Vec::new()),
            "open conn closed"
        );
        let mut fresh = TcpStream::connect(&via).await.expect("accept still works");
        assert_eq!(
            echo(&mut fresh, b"y", short).await,
            Some(Vec::new()),
            "new conn closed"
        );

        net.heal();
        let mut again = TcpStream::connect(&via).await.expect("connect");
        assert_eq!(
            echo(&mut again, b"back", short).await.as_deref(),
            Some(&b"back"[..])
        );
    }

    #[tokio::test]
    async fn blackhole_keeps_connections_open_but_silent_until_healed() {
        let (net, via) = net();
        let short = Duration::from_millis(400);
        let mut open = TcpStream::connect(&via).await.expect("connect");
        assert!(echo(&mut open, b"a", short).await.is_some());

        net.isolate(2, Mode::Blackhole);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(net.links[&(1, 2)].mode(), Mode::Blackhole);
        assert_eq!(
            echo(&mut open, b"lost", short).await,
            None,
            "no answer, no close"
        );
        let mut fresh = TcpStream::connect(&via).await.expect("accepted");
        assert_eq!(echo(&mut fresh, b"lost", short).await, None);

        // Healing closes the blackholed connections (their streams lost bytes) and new ones pass.
        net.heal();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(echo(&mut open, b"z", short).await, Some(Vec::new()));
        let mut again = TcpStream::connect(&via).await.expect("connect");
        assert_eq!(
            echo(&mut again, b"ok", short).await.as_deref(),
            Some(&b"ok"[..])
        );
    }

    #[test]
    fn flags_name_every_peer_through_its_own_proxy() {
        let net = FaultNet::new(&[
            (1, "127.0.0.1:1".into()),
            (2, "127.0.0.1:2".into()),
            (3, "127.0.0.1:3".into()),
        ]);
        let flags = net.flags_for(1);
        assert_eq!(flags.len(), 4);
        assert_eq!(flags[0], "--peer-via");
        assert!(flags[1].starts_with("2=127.0.0.1:"), "{flags:?}");
        assert!(flags[3].starts_with("3=127.0.0.1:"), "{flags:?}");
        assert_ne!(net.links[&(1, 2)].addr, net.links[&(3, 2)].addr);
    }
}
