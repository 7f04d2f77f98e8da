//! Connection budgets of the node's two listeners, so that no flood on either port can use up
//! the descriptors that consensus, a rejoin or the node's own dials need.
//!
//! At start the soft open-file limit is raised to the hard one ([`raise_fd_limit`]). A share
//! of it is kept back for the node itself (log and snapshot files, Python, its outgoing dials
//! to peers and leaders); the rest is split between the node's address and the HTTP port
//! ([`Limits::new`]). Each port then has three stages:
//!
//! - **waiting** — accepted, not yet identified (no hello on the node's address, no complete
//!   request on the HTTP port). Cheap (one socket and one small task) and short (the hello or
//!   header deadline). When the waiting pool is full, a new connection closes the *oldest*
//!   waiting one: a flood of silent connections cannot lock out a peer or client that speaks
//!   up, because the newest arrival always gets its deadline's worth of time.
//! - **peer** / **client** (node's address) and **active** (HTTP): identified connections.
//!   Peers have a pool of their own that clients cannot fill. Over a bound a connection is
//!   refused at once (an error frame, or a 503), never left in the kernel's backlog.
//! - An optional cap per client IP covers all stages of a port.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::ConnectionSettings;
use crate::metrics::metrics;

/// Descriptors kept back for the node itself: at most this many, at most a quarter.
const RESERVED_FDS: u64 = 256;
/// What an unlimited RLIMIT_NOFILE counts as when sizing budgets.
const UNLIMITED_FDS: u64 = 1 << 20;
/// Peer links the node's address always has room for (openraft opens a few per peer).
const MAX_PEERS: usize = 64;
/// Connections that may wait for their hello or first request, per port.
const MAX_WAITING: usize = 1024;
/// Default ceilings of identified connections.
const MAX_CLIENTS: usize = 4096;
const MAX_HTTP_ACTIVE: usize = 8192;

/// Raises this process's soft RLIMIT_NOFILE to its hard limit; returns (before, after).
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write only the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

/// At node start: raises the open-file limit, sizes both ports' budgets from it, logs them.
pub fn start(config: &crate::config::NodeConfig) -> Arc<Limits> {
    let fd_limit = match raise_fd_limit() {
        Ok((before, after)) => {
            if after > before {
                tracing::info!("raised the open-file limit from {before} to {after}");
            }
            after
        }
        Err(e) => {
            let limit = crate::procstat::fd_limit();
            tracing::warn!("cannot raise the open-file limit ({e}); keeping {limit}");
            limit
        }
    };
    let limits = Limits::new(&config.connections, fd_limit, config.http.is_some());
    let (waiting, clients, peers) = limits.node.bounds();
    let (http_waiting, active, _) = limits.http.bounds();
    tracing::info!(
        fd_limit,
        waiting,
        clients,
        peers,
        http_waiting,
        http_active = active,
        "connection budgets"
    );
    Arc::new(limits)
}

/// Why a connection was closed by the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this node already holds its maximum of {max} {what} connections; retry shortly")]
    Full { what: &'static str, max: usize },
    #[error(
        "this node already holds its maximum of {max} connections from {ip}; close some first"
    )]
    PerIp { ip: IpAddr, max: usize },
}

impl Refused {
    fn reason(&self) -> &'static str {
        match self {
            Refused::Full { .. } => "full",
            Refused::PerIp { .. } => "per_ip",
        }
    }
}

/// The identified stage a connection moves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Peer,
    Client,
    /// An HTTP connection that has sent a complete request.
    Active,
}

/// Both listeners' budgets and the deadlines they enforce.
pub struct Limits {
    pub fd_limit: u64,
    pub node: Arc<Port>,
    pub http: Arc<Port>,
    pub settings: ConnectionSettings,
}

impl Limits {
    /// Splits what `fd_limit` leaves after the node's own reserve between the two ports.
    pub fn new(settings: &ConnectionSettings, fd_limit: u64, http: bool) -> Limits {
        let fds = if fd_limit == 0 || fd_limit > UNLIMITED_FDS {
            UNLIMITED_FDS
        } else {
            fd_limit
        };
        let usable = (fds - RESERVED_FDS.min(fds / 4)) as usize;
        let (node_share, http_share) = if http {
            (usable / 2, usable - usable / 2)
        } else {
            (usable, 0)
        };
        let peers = (node_share / 8).clamp(8, MAX_PEERS);
        let waiting = (node_share / 4).clamp(16, MAX_WAITING);
        let clients = settings.max_connections.unwrap_or(
            node_share
                .saturating_sub(peers + waiting)
                .clamp(16, MAX_CLIENTS),
        );
        let node = Port::new(
            "node",
            waiting,
            clients,
            peers,
            settings.max_connections_per_ip,
        );
        let http_waiting = (http_share / 4).clamp(16, MAX_WAITING);
        let active = settings.http_max_connections.unwrap_or(
            http_share
                .saturating_sub(http_waiting)
                .clamp(16, MAX_HTTP_ACTIVE),
        );
        let http = Port::new(
            "http",
            http_waiting,
            active,
            0,
            settings.http_max_connections_per_ip,
        );
        Limits {
            fd_limit,
            node,
            http,
            settings: settings.clone(),
        }
    }
}

/// A bounded count of connections in one stage.
struct Counter {
    max: usize,
    open: AtomicUsize,
}

impl Counter {
    fn take(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) -> usize {
        self.open.fetch_sub(1, Ordering::AcqRel) - 1
    }
}

/// One listener's budgets.
pub struct Port {
    listener: &'static str,
    waiting_max: usize,
    /// Waiting connections, oldest first, each with the bell that evicts it.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next: AtomicU64,
    clients: Counter,
    peers: Counter,
    per_ip: Option<(usize, Mutex<HashMap<IpAddr, usize>>)>,
}

impl Port {
    fn new(
        listener: &'static str,
        waiting: usize,
        clients: usize,
        peers: usize,
        per_ip: Option<usize>,
    ) -> Arc<Port> {
        Arc::new(Port {
            listener,
            waiting_max: waiting,
            waiting: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            clients: Counter {
                max: clients,
                open: AtomicUsize::new(0),
            },
            peers: Counter {
                max: peers,
                open: AtomicUsize::new(0),
            },
            per_ip: per_ip.map(|max| (max, Mutex::new(HashMap::new()))),
        })
    }

    /// (waiting, clients or active, peers) a port holds at most.
    pub fn bounds(&self) -> (usize, usize, usize) {
        (self.waiting_max, self.clients.max, self.peers.max)
    }

    fn stage_gauge(&self, stage: &str, n: usize) {
        metrics()
            .connections
            .with_label_values(&[self.listener, stage])
            .set(n as i64);
    }

    /// Counts a connection this port closed itself.
    pub fn closed(&self, reason: &str) {
        metrics()
            .connections_closed
            .with_label_values(&[self.listener, reason])
            .inc();
    }

    /// A connection just accepted from `ip`: it waits for its hello (or first request) in the
    /// waiting pool, evicting the oldest waiting connection when the pool is full.
    pub fn admit(self: &Arc<Port>, ip: IpAddr) -> Result<Waiting, Refused> {
        let ip_slot = match &self.per_ip {
            None => None,
            Some((max, counts)) => {
                let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
                let n = counts.entry(ip).or_insert(0);
                if *n >= *max {
                    drop(counts);
                    let refused = Refused::PerIp { ip, max: *max };
                    self.closed(refused.reason());
                    return Err(refused);
                }
                *n += 1;
                Some(IpSlot {
                    port: self.clone(),
                    ip,
                })
            }
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let bell = Arc::new(Notify::new());
        let evicted = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let evicted = if waiting.len() >= self.waiting_max {
                waiting.pop_first()
            } else {
                None
            };
            waiting.insert(id, bell.clone());
            self.stage_gauge("waiting", waiting.len());
            evicted
        };
        if let Some((_, oldest)) = evicted {
            oldest.notify_one();
            self.closed("evicted");
        }
        Ok(Waiting {
            port: self.clone(),
            id,
            bell,
            ip: ip_slot,
        })
    }
}

/// Holds one unit of a per-IP cap.
struct IpSlot {
    port: Arc<Port>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((_, counts)) = &self.port.per_ip {
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// A connection in the waiting pool.
pub struct Waiting {
    port: Arc<Port>,
    id: u64,
    bell: Arc<Notify>,
    ip: Option<IpSlot>,
}

impl Waiting {
    /// Resolves when a newer connection has taken this one's place: close it.
    pub async fn evicted(&self) {
        self.bell.notified().await
    }

    /// The bell [`Waiting::evicted`] waits on, for a task that gives the `Waiting` away.
    pub fn bell(&self) -> Arc<Notify> {
        self.bell.clone()
    }

    /// The port this connection came in on.
    pub fn port(&self) -> &Arc<Port> {
        &self.port
    }

    /// Leaves the waiting pool for `stage`, or is refused when that stage is full.
    pub fn promote(mut self, stage: Stage) -> Result<Admitted, Refused> {
        let (counter, what) = match stage {
            Stage::Peer => (&self.port.peers, "peer"),
            Stage::Client => (&self.port.clients, "client"),
            Stage::Active => (&self.port.clients, "HTTP"),
        };
        if !counter.take() {
            let refused = Refused::Full {
                what,
                max: counter.max,
            };
            self.port.closed(refused.reason());
            return Err(refused);
        }
        self.port
            .stage_gauge(stage_name(stage), counter.open.load(Ordering::Acquire));
        Ok(Admitted {
            port: self.port.clone(),
            stage,
            _ip: self.ip.take(),
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.port.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.remove(&self.id).is_some() {
            self.port.stage_gauge("waiting", waiting.len());
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Peer => "peer",
        Stage::Client => "client",
        Stage::Active => "active",
    }
}

/// An identified connection's place; given back when dropped.
pub struct Admitted {
    port: Arc<Port>,
    stage: Stage,
    _ip: Option<IpSlot>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let counter = match self.stage {
            Stage::Peer => &self.port.peers,
            Stage::Client | Stage::Active => &self.port.clients,
        };
        let open = counter.give_back();
        self.port.stage_gauge(stage_name(self.stage), open);
    }
}

/// Failed accepts: back off instead of spinning, and log at most every 10 s with a count.
pub struct AcceptErrors {
    listener: &'static str,
    delay: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
}

const LOG_EVERY: Duration = Duration::from_secs(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

impl AcceptErrors {
    pub fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors {
            listener,
            delay: Duration::ZERO,
            unlogged: 0,
            last_log: None,
        }
    }

    /// An accept succeeded: the next failure starts with a short pause again.
    pub fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// Counts and (rate-limited) logs `e`, then waits: 10 ms doubling to 1 s for a lack of
    /// resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), nothing for a connection that died in
    /// the backlog.
    pub async fn failed(&mut self, e: &std::io::Error) {
        metrics()
            .accept_errors
            .with_label_values(&[self.listener])
            .inc();
        self.unlogged += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                listener = self.listener,
                "accept failed {} time(s) since the last report: {e}",
                self.unlogged
            );
            self.unlogged = 0;
            self.last_log = Some(Instant::now());
        }
        let scarce = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if scarce {
            self.delay = (self.delay * 2).clamp(Duration::from_millis(10), MAX_DELAY);
            tokio::time::sleep(self.delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn budgets_stay_below_the_fd_limit() {
        let settings = ConnectionSettings::default();
        for fds in [256u64, 512, 1024, 4096, 1 << 20, u64::MAX] {
            let l = Limits::new(&settings, fds, true);
            let (nw, nc, np) = l.node.bounds();
            let (hw, ha, _) = l.http.bounds();
            let total = (nw + nc + np + hw + ha) as u64;
            assert!(
                total <= fds.min(UNLIMITED_FDS) - RESERVED_FDS.min(fds / 4),
                "{fds}: {total}"
            );
            assert!(np >= 8 && nc >= 16 && ha >= 16, "{fds}");
        }
        let l = Limits::new(&settings, 1 << 20, true);
        assert_eq!(l.node.bounds(), (MAX_WAITING, MAX_CLIENTS, MAX_PEERS));
    }

    #[tokio::test]
    async fn a_full_waiting_pool_evicts_its_oldest() {
        let port = Port::new("test", 2, 1, 1, None);
        let first = port.admit(ip(1)).expect("first");
        let _second = port.admit(ip(1)).expect("second");
        let third = port.admit(ip(1)).expect("third");
        tokio::time::timeout(Duration::from_secs(1), first.evicted())
            .await
            .expect("the oldest is told to close");
        // Promotion frees the waiting place; the stage's own bound then applies.
        let client = third.promote(Stage::Client).expect("client");
        let fourth = port.admit(ip(1)).expect("fourth");
        assert_eq!(
            fourth.promote(Stage::Client).err(),
            Some(Refused::Full {
                what: "client",
                max: 1
            })
        );
        drop(client);
        let fifth = port.admit(ip(1)).expect("fifth");
        assert!(fifth.promote(Stage::Client).is_ok());
        let peer = port.admit(ip(2)).expect("peer").promote(Stage::Peer);
        assert!(peer.is_ok(), "peers have their own room");
    }

    #[test]
    fn per_ip_caps_count_every_stage() {
        let port = Port::new("test", 10, 10, 1, Some(2));
        let a = port.admit(ip(1)).expect("a").promote(Stage::Client);
        let _b = port.admit(ip(1)).expect("b");
        assert!(matches!(
            port.admit(ip(1)),
            Err(Refused::PerIp { max: 2, .. })
        ));
        assert!(port.admit(ip(2)).is_ok(), "another address is not capped");
        drop(a);
        assert!(port.admit(ip(1)).is_ok());
    }
}
