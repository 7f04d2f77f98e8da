//! Connection floods against one node (issue #21): more idle connections than the node has
//! file descriptors, on its address and on its HTTP port; slow-header and slow-body HTTP
//! clients; the HTTP connection bound and the per-IP cap. Node 1 (the leader) runs under an
//! open-file limit of [`FDS`]. Throughout, the hostile table's canary (writes and linearizable
//! reads through node 2) must see no failure and no gap over 2 s; during each flood a follower
//! is killed and restarted and must catch up, and node 1 must answer a ping and `/metrics`;
//! the node must then close the idle connections within its documented deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use push_protocol::{Op, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::hostile::Canary;
use crate::support::http;
use crate::support::Cluster;

/// Node 1's open-file limit, soft and hard.
const FDS: u64 = 512;
/// Idle connections per flood: more than node 1 has descriptors.
const FLOOD: usize = 600;
/// The node's documented deadlines: hello 5 s, HTTP request head 10 s (defaults); the body
/// deadline is set to 3 s for this test.
const HELLO: Duration = Duration::from_secs(5);
const HEAD: Duration = Duration::from_secs(10);
const BODY_MS: &str = "3000";
/// Slack on top of a deadline for a loaded machine.
const SLACK: Duration = Duration::from_secs(3);
/// HTTP connections node 1 serves at once, and per client IP.
const HTTP_MAX: usize = 8;
const HTTP_PER_IP: usize = 40;

/// Lets this test process hold its side of the floods.
fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A TCP connection to `addr` from source address `from`, within 2 s.
async fn connect_from(from: Ipv4Addr, addr: &str) -> Option<TcpStream> {
    let addr: SocketAddr = addr.parse().expect("address");
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
        .await
        .ok()?
        .ok()
}

/// Opens up to `n` connections to `addr`, from 127.0.0.`first_ip` onwards, `per_ip` each.
async fn open_idle(addr: &str, n: usize, first_ip: u8, per_ip: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let ip = Ipv4Addr::new(127, 0, 0, first_ip + (i / per_ip) as u8);
        if let Some(c) = connect_from(ip, addr).await {
            conns.push(c);
        }
    }
    conns
}

/// Reads each connection to its end; returns how many the node closed within `within`.
async fn closed_within(conns: Vec<TcpStream>, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let mut tasks = Vec::new();
    for mut c in conns {
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
                    Err(_) => return false,
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => {}
                }
            }
        }));
    }
    let mut closed = 0;
    for t in tasks {
        closed += usize::from(t.await.expect("reader"));
    }
    closed
}

/// Node 1 answers a ping and `/metrics` while flooded; returns its status.
async fn assert_answers(cluster: &Cluster, case: &str) -> push_protocol::NodeStatus {
    let started = Instant::now();
    let pong = tokio::time::timeout(Duration::from_secs(3), async {
        let c = cluster.client(1).await;
        c.call(Op::Ping).await
    })
    .await;
    assert!(
        matches!(pong, Ok(Ok(Reply::Pong))),
        "{case}: node 1 did not answer a ping: {pong:?}"
    );
    let metrics = http::request(&cluster.http(1), "GET", "/metrics", &[], b"").await;
    let metrics = metrics.unwrap_or_else(|e| panic!("{case}: /metrics failed: {e}"));
    assert_eq!(metrics.status, 200, "{case}: {}", metrics.text());
    let text = metrics.text();
    assert!(
        text.contains(&format!("push_process_max_fds {FDS}"))
            && text.contains("push_process_open_fds"),
        "{case}: no fd gauges in /metrics"
    );
    let status = cluster.status(1).await.expect("status of node 1");
    assert_eq!(status.fd_limit, FDS, "{case}");
    assert!(
        status.fds_open > 0 && status.fds_open < FDS,
        "{case}: {} descriptors open",
        status.fds_open
    );
    eprintln!(
        "{case}: node 1 answered in {:?} with {} of {} descriptors open",
        started.elapsed(),
        status.fds_open,
        status.fd_limit
    );
    status
}

/// Kills follower 3, restarts it, and waits until it follows node 1 again, has applied
/// entries written after its restart, and has applied everything node 1 had (lag 0).
async fn restart_follower(cluster: &mut Cluster, case: &str) {
    cluster.kill(3);
    cluster.restart(3);
    let written_after = cluster
        .status(1)
        .await
        .and_then(|s| s.last_log_index)
        .expect("leader status")
        + 2;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let leader = cluster.status(1).await;
        let follower = cluster.status(3).await;
        if let (Some(l), Some(f)) = (leader, follower) {
            if f.role == "follower"
                && f.leader == Some(1)
                && f.applied_index >= Some(written_after)
                && f.applied_index >= l.last_log_index
            {
                eprintln!("{case}: follower 3 rejoined with lag 0");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{case}: follower 3 did not catch up within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cpu_ms(status: &push_protocol::NodeStatus) -> u64 {
    status.cpu_ms
}

/// The common part of both idle floods.
async fn idle_flood(
    cluster: &mut Cluster,
    canary: &Canary,
    case: &str,
    addr: &str,
    per_ip: usize,
    deadline: Duration,
) {
    let before = canary.rounds.load(Ordering::Relaxed);
    let cpu_before = cpu_ms(&cluster.status(1).await.expect("status"));
    let started = Instant::now();
    let conns = open_idle(addr, FLOOD, 10, per_ip).await;
    let opened = Instant::now();
    eprintln!(
        "{case}: opened {} of {FLOOD} connections in {:?}",
        conns.len(),
        opened - started
    );
    let held = conns.len();
    assert!(held > FDS as usize, "{case}: only {held} opened");
    // Watch every connection from now on, while the checks below run.
    let closed = tokio::spawn(closed_within(conns, deadline + SLACK));
    assert_answers(cluster, case).await;
    restart_follower(cluster, case).await;
    assert_answers(cluster, case).await;
    let closed = closed.await.expect("watcher");
    eprintln!(
        "{case}: node 1 spent {} ms of CPU over the {:?} from the flood's start until the last \
         idle connection was closed",
        cpu_ms(&cluster.status(1).await.expect("status")).saturating_sub(cpu_before),
        started.elapsed()
    );
    assert_eq!(
        closed, held,
        "{case}: the node closed only {closed} of {held} idle connections within {deadline:?}"
    );
    canary.assert_healthy(case, before).await;
}

/// A slow-header client dribbles a request head and is cut off at the head deadline.
async fn slow_headers(cluster: &Cluster, canary: &Canary) {
    let case = "slow headers";
    let before = canary.rounds.load(Ordering::Relaxed);
    let addr = cluster.http(1);
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("head");
        conns.push(c);
    }
    let started = Instant::now();
    let mut open = conns.len();
    // One header byte per connection every 500 ms, at most until the deadline plus slack.
    while open > 0 && started.elapsed() < HEAD + SLACK {
        open = 0;
        for c in &mut conns {
            if c.write_all(b"X").await.is_ok() {
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(1), c.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {}
                    _ => open += 1,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(open, 0, "{case}: {open} slow connections outlived {HEAD:?}");
    assert!(started.elapsed() >= HEAD - Duration::from_secs(1), "{case}");
    eprintln!("{case}: all cut off after {:?}", started.elapsed());
    assert_answers(cluster, case).await;
    canary.assert_healthy(case, before).await;
}

/// A slow upload gets a 408 at the body deadline.
async fn slow_body(cluster: &Cluster, canary: &Canary) {
    let case = "slow body";
    let before = canary.rounds.load(Ordering::Relaxed);
    let addr = cluster.http(1);
    let mut c = TcpStream::connect(&addr).await.expect("connect");
    c.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .expect("head");
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    let limit = Duration::from_millis(BODY_MS.parse().expect("ms")) + SLACK;
    'dribble: while started.elapsed() < limit {
        let _ = c.write_all(b"x").await;
        match tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break 'dribble,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 408") && text.contains("did not arrive within 3000 ms"),
        "{case}: after {:?}: {text:?}",
        started.elapsed()
    );
    eprintln!("{case}: 408 after {:?}", started.elapsed());
    canary.assert_healthy(case, before).await;
}

/// Over the HTTP bound a request gets a 503 at once; a client IP over its cap too.
async fn http_bounds(cluster: &Cluster, canary: &Canary) {
    let case = "HTTP bounds";
    let before = canary.rounds.load(Ordering::Relaxed);
    let addr = cluster.http(1);
    let mut kept = Vec::new();
    for _ in 0..HTTP_MAX {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{case}");
        kept.push(c);
    }
    let over = http::request(&addr, "GET", "/metrics", &[], b"")
        .await
        .expect("an answer");
    assert_eq!(over.status, 503, "{case}: {}", over.text());
    assert!(
        over.text().contains("maximum of 8 HTTP connections"),
        "{}",
        over.text()
    );
    drop(kept);
    // The kept connections' places come back once the node sees them closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while http::request(&addr, "GET", "/metrics", &[], b"")
        .await
        .map(|r| r.status)
        != Ok(200)
    {
        assert!(Instant::now() < deadline, "{case}: places not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One IP over its cap: refused at once with a 503.
    let conns = open_idle(&addr, HTTP_PER_IP + 5, 2, HTTP_PER_IP + 5).await;
    let mut refused = 0;
    for mut c in conns {
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await
        {
            refused += usize::from(buf[..n].starts_with(b"HTTP/1.1 503"));
        }
    }
    assert_eq!(
        refused, 5,
        "{case}: the per-IP cap of {HTTP_PER_IP} refused {refused}"
    );
    eprintln!("{case}: a 503 over {HTTP_MAX} requests in progress and over {HTTP_PER_IP} per IP");
    canary.assert_healthy(case, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_on_either_port_do_not_stop_the_cluster() {
    raise_own_fd_limit();
    let http_max = HTTP_MAX.to_string();
    let per_ip = HTTP_PER_IP.to_string();
    let node1: &[&str] = &[
        "--http-body-timeout-ms",
        BODY_MS,
        "--http-max-connections",
        &http_max,
        "--http-max-connections-per-ip",
        &per_ip,
    ];
    let mut cluster = Cluster::start_limited(3, &[], &[(1, FDS, node1)]).await;
    assert_eq!(
        cluster.wait_leader(Duration::from_secs(10)).await,
        1,
        "node 1 bootstrapped the cluster and leads it"
    );
    let canary = Canary::start(cluster.addr(2), cluster.token.clone());
    canary.assert_healthy("start", 0).await;

    let addr = cluster.addr(1);
    idle_flood(&mut cluster, &canary, "node address", &addr, FLOOD, HELLO).await;
    let http_addr = cluster.http(1);
    // Spread over source IPs so the per-IP cap is not what holds the flood back.
    idle_flood(
        &mut cluster,
        &canary,
        "HTTP port",
        &http_addr,
        HTTP_PER_IP / 2,
        HEAD,
    )
    .await;
    slow_headers(&cluster, &canary).await;
    slow_body(&cluster, &canary).await;
    http_bounds(&cluster, &canary).await;

    canary.stop.store(true, Ordering::Relaxed);
    canary.task.await.expect("canary");
}
