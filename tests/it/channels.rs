//! Channels on a 3-node cluster: events published through one node reach subscribers on
//! every node in order and once; `Last-Event-ID` resumes with exactly the missed events; an
//! id older than the history says so; a node killed with -9 serves the history after its
//! restart; bad publishes and subscriptions are refused with clear errors and lose nothing.
//! Also backpressure on streamed answers: a fast generator writing to a client that stops
//! reading does not grow the node's memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use push_protocol::{Op, Reply};

use crate::support::cluster::{fails, ok, Cluster};

/// One thing an SSE stream said.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// A comment line (`: ...`).
    Comment(String),
    Event {
        kind: Option<String>,
        id: Option<u64>,
        data: String,
    },
}

/// A subscriber reading `GET /_push/channels/NAME` on a thread (HTTP/1.0, so the body is
/// the raw event stream until the node closes it).
struct Subscriber {
    items: mpsc::Receiver<Item>,
    status: String,
}

impl Subscriber {
    fn open(addr: &str, path: &str, headers: &[(&str, &str)]) -> Subscriber {
        // A node just restarted may not listen yet: retry the connect (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut socket = loop {
            match std::net::TcpStream::connect(addr) {
                Ok(socket) => break socket,
                Err(e) if Instant::now() > deadline => panic!("connect to {addr}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        socket.write_all(head.as_bytes()).expect("send head");
        let mut reader = BufReader::new(socket);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let (tx, items) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut kind, mut id, mut data) = (None, None, Vec::<String>::new());
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = line.trim_end_matches(['\r', '\n']);
                let item = if let Some(comment) = line.strip_prefix(':') {
                    Some(Item::Comment(comment.trim().to_string()))
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = Some(v.to_string());
                    None
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                    None
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v.to_string());
                    None
                } else if line.is_empty() && (kind.is_some() || id.is_some() || !data.is_empty()) {
                    Some(Item::Event {
                        kind: kind.take(),
                        id: id.take(),
                        data: std::mem::take(&mut data).join("\n"),
                    })
                } else {
                    None
                };
                if let Some(item) = item {
                    if tx.send(item).is_err() {
                        return;
                    }
                }
            }
        });
        Subscriber { items, status }
    }

    /// The whole answer of a refused subscription (status line and body).
    fn refused(addr: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        socket.write_all(head.as_bytes()).expect("send head");
        let mut text = String::new();
        socket.read_to_string(&mut text).expect("read answer");
        text
    }

    fn next(&self) -> Item {
        self.items
            .recv_timeout(Duration::from_secs(30))
            .expect("an SSE item within 30 s")
    }

    /// Waits for the subscription's opening comment.
    fn subscribed(&self) {
        assert!(self.status.contains(" 200"), "{}", self.status);
        match self.next() {
            Item::Comment(c) if c.starts_with("subscribed") => {}
            other => panic!("expected the opening comment, got {other:?}"),
        }
    }

    /// The next `n` events (keep-alive comments skipped) as (id, data).
    fn events(&self, n: usize) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next() {
                Item::Comment(_) => {}
                Item::Event {
                    kind: None,
                    id: Some(id),
                    data,
                } => out.push((id, data)),
                other => panic!("expected an event, got {other:?} after {out:?}"),
            }
        }
        out
    }
}

async fn publish(cluster: &Cluster, node: u64, channel: &str, data: &str) -> u64 {
    let client = cluster.client(node).await;
    match client
        .call(Op::Publish {
            app: "main".into(),
            channel: channel.into(),
            data: data.into(),
        })
        .await
    {
        Ok(Reply::Published { id, .. }) => id,
        other => panic!("publish: {other:?}"),
    }
}

const APP: &str = r#"
import push


@push.route("POST", "/announce")
def announce(request):
    return {"id": push.channel("news").publish({"said": request.body.decode()})}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_node_in_order_once_and_resume() {
    let mut cluster = Cluster::start(3).await;
    cluster.deploy_app("site", APP, 1, "announce");
    let path = "/_push/channels/news";
    let subs: Vec<Subscriber> = (1..=3)
        .map(|id| Subscriber::open(&cluster.http(id), path, &[]))
        .collect();
    for s in &subs {
        s.subscribed();
    }
    // Through node 1: the CLI, the protocol, and app code (JSON).
    let out = ok(&cluster.cli(&["publish", "news", "one", "--to", &cluster.addr(1)]));
    assert!(out.contains("published event 1 on news"), "{out}");
    for n in 2..=10 {
        assert_eq!(publish(&cluster, 1, "news", &format!("event {n}")).await, n);
    }
    let answer = crate::support::http::request(&cluster.http(1), "POST", "/announce", &[], b"hi")
        .await
        .expect("announce");
    assert_eq!(answer.text(), r#"{"id": 11}"#, "{answer:?}");
    let mut want: Vec<(u64, String)> = vec![(1, "one".to_string())];
    want.extend((2..=10).map(|n| (n, format!("event {n}"))));
    want.push((11, r#"{"said":"hi"}"#.to_string()));
    for s in &subs {
        assert_eq!(s.events(11), want);
    }
    // Once: the next event each gets is the next one published.
    assert_eq!(publish(&cluster, 2, "news", "a\nb").await, 12);
    for s in &subs {
        assert_eq!(s.events(1), vec![(12, "a\nb".to_string())]);
    }

    // Resume after 8 (header) and after 10 (query): exactly the missed ones, then live.
    let resumed = Subscriber::open(&cluster.http(2), path, &[("Last-Event-ID", "8")]);
    resumed.subscribed();
    let ids: Vec<u64> = resumed.events(4).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, vec![9, 10, 11, 12]);
    let by_query = Subscriber::open(&cluster.http(3), &format!("{path}?last_event_id=10"), &[]);
    by_query.subscribed();
    assert_eq!(by_query.events(2)[0].0, 11);
    assert_eq!(publish(&cluster, 3, "news", "thirteen").await, 13);
    assert_eq!(resumed.events(1), vec![(13, "thirteen".to_string())]);

    // A node killed with -9 serves the history after its restart.
    cluster.kill(3);
    assert_eq!(publish(&cluster, 1, "news", "while 3 was down").await, 14);
    cluster.restart(3);
    let after = Subscriber::open(&cluster.http(3), path, &[("Last-Event-ID", "0")]);
    after.subscribed();
    let got = after.events(14);
    assert_eq!(
        got.iter().map(|e| e.0).collect::<Vec<_>>(),
        (1..=14).collect::<Vec<_>>()
    );
    assert_eq!(got[13].1, "while 3 was down");

    // An id older than the history: 20 events of 64 KiB push the oldest out (1 MiB cap).
    // Node 2 may not have applied the last ones yet; whatever it holds, the subscriber is
    // told which ids are gone and then gets every later one, up to 20.
    let big = "x".repeat(64 * 1024);
    for _ in 0..20 {
        publish(&cluster, 1, "big", &big).await;
    }
    let old = Subscriber::open(
        &cluster.http(2),
        "/_push/channels/big",
        &[("Last-Event-ID", "1")],
    );
    old.subscribed();
    let gone_to: u64 = match old.next() {
        Item::Event {
            kind: Some(kind),
            data,
            ..
        } if kind == "missed" => {
            assert!(data.starts_with("events 2 to "), "{data}");
            assert!(data.contains("are no longer in the history"), "{data}");
            data["events 2 to ".len()..]
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("the last missed id")
        }
        other => panic!("expected a missed event, got {other:?}"),
    };
    assert!(gone_to >= 2, "the missed event names at least event 2");
    let rest = old.events((20 - gone_to) as usize);
    assert_eq!(
        rest.iter().map(|e| e.0).collect::<Vec<_>>(),
        (gone_to + 1..=20).collect::<Vec<_>>()
    );

    // Bad input: refused with a clear error, nothing published.
    let addr = cluster.addr(2);
    let e = fails(&cluster.cli(&["publish", "", "x", "--to", &addr]));
    assert!(e.contains("the channel name is empty"), "{e}");
    let e = fails(&cluster.cli(&["publish", "a/b", "x", "--to", &addr]));
    assert!(e.contains("use letters, digits"), "{e}");
    let e = fails(&cluster.cli(&["publish", "news", &"y".repeat(70_000), "--to", &addr]));
    assert!(e.contains("limited to 65536 bytes"), "{e}");
    let e = fails(&cluster.cli(&["publish", "news", "x", "--app", "nosuch", "--to", &addr]));
    assert!(e.contains("no app called \"nosuch\""), "{e}");
    for (path, headers, want) in [
        ("/_push/channels/a%20b", vec![], "400"),
        ("/_push/channels/news?app=nosuch", vec![], "404"),
        (
            "/_push/channels/news",
            vec![("Last-Event-ID", "soon")],
            "400",
        ),
    ] {
        let text = Subscriber::refused(&cluster.http(1), path, &headers);
        assert!(
            text.starts_with(&format!("HTTP/1.0 {want}"))
                || text.starts_with(&format!("HTTP/1.1 {want}")),
            "{path}: {text}"
        );
    }
    assert_eq!(publish(&cluster, 2, "news", "after the refusals").await, 15);
    // Node 3's first subscriber ended with its node; the others saw each event once.
    for s in &subs[..2] {
        let got = s.events(3);
        assert_eq!(
            got.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![13, 14, 15]
        );
        assert_eq!(got[2].1, "after the refusals");
    }
}

const BIG_APP: &str = r#"
import push

progress = push.kv("progress")
CHUNK = b"x" * (1 << 20)


@push.route("GET", "/ready")
def ready():
    return "ready"


@push.route("GET", "/big")
def big():
    def chunks():
        for n in range(200):  # 200 MiB
            if n % 8 == 0:
                progress["sent"] = n
            yield CHUNK
        progress["sent"] = 200

    return push.Response(chunks(), headers={"content-type": "application/octet-stream"})
"#;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A 200 MiB generator answering a client that stops reading: the generator blocks once a
/// bounded window is on its way, the node's RSS stays within 64 MiB of where it was, and the
/// whole answer arrives once the client reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_holds_back_a_fast_generator() {
    let cluster = Cluster::start(1).await;
    cluster.deploy_app("big", BIG_APP, 1, "big");
    let pid = cluster.pid(1).expect("node pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::support::http::get(&cluster.http(1), "/ready")
        .await
        .text()
        != "ready"
    {
        assert!(Instant::now() < deadline, "the app never served /ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = cluster.client(1).await;
    let sent = || async {
        match client
            .call(Op::KvGet {
                map: "progress".into(),
                key: "sent".into(),
                read: push_protocol::ReadMode::Stale,
            })
            .await
        {
            Ok(Reply::Value(Some(push_protocol::Value::Int(n)))) => n,
            _ => -1,
        }
    };
    let before = rss(pid);
    let mut socket = std::net::TcpStream::connect(cluster.http(1)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    socket
        .write_all(b"GET /big HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut first = vec![0u8; 64 * 1024];
    socket.read_exact(&mut first).expect("the answer starts");
    // The generator got going; now the client reads nothing for a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent().await < 0 {
        assert!(Instant::now() < deadline, "the generator never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut peak = 0;
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stalled_at = sent().await;
    assert!(
        stalled_at < 200,
        "the generator finished while its client read nothing: nothing held it back"
    );
    assert!(
        peak < before + 64 * 1024 * 1024,
        "the node grew from {before} to {peak} bytes while its client did not read"
    );
    // Reading again: the rest arrives, all of it.
    let rest = tokio::task::spawn_blocking(move || {
        let mut total = first.len() as u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n as u64,
                Err(e) => panic!("reading the answer: {e}"),
            }
        }
    });
    let total = rest.await.expect("reader");
    // The head came before the body in what was read; the body is 200 MiB.
    assert!(total > 200 * 1024 * 1024, "only {total} bytes arrived");
    eprintln!(
        "backpressure: generator held at {stalled_at}/200 MiB; node RSS {} -> {} MiB",
        before >> 20,
        peak >> 20
    );
}
