//! Formats across releases: the golden fixtures of formats 1 (bincode), 2 (the first
//! postcard release) and 3 (realms, secrets, config) — data dirs and recorded frames — load
//! in this one, their data dirs upgrade in place on first start (also when killed
//! mid-upgrade), a newer one is refused naming both versions, and a format-1 client still gets
//! answers in its own shapes; the current format's own fixture (format 4: blob files,
//! channels) decodes and serves as it is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use push::consensus::format::{LOG_MAGIC, SNAPSHOT_MAGIC};
use push::consensus::network::{RaftRpc, RaftRpcReply};
use push::consensus::snapshot_file::read_state;
use push_protocol::format::{self, handshake as layout};
use push_protocol::frame::Kind;
use push_protocol::{
    ErrorCode, Op, ReadMode, Reply, Role, Value, FORMAT_VERSION, MIN_FORMAT_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::cluster::{copy_dir, free_port, get, ok, push_bin};
use crate::support::raw::{error_body, hello, next, request};
use crate::support::Cluster;

const FIXTURE_TOKEN: &str = "fixture-token";

/// The formats of earlier releases, each with a fixture.
const OLDER: [u32; 3] = [1, 2, 3];

fn fixture(format: u32, part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/format-{format}"))
        .join(part)
}

/// The frames of a recording: (connection, to the node?, kind, payload).
fn frames(format: u32, name: &str) -> Vec<(u32, bool, Kind, Vec<u8>)> {
    let text = std::fs::read_to_string(fixture(format, name)).expect("recorded frames");
    text.lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let conn = parts.next().and_then(|c| c.parse().ok()).expect("conn");
            let inbound = parts.next() == Some(">");
            let hex = parts.next().expect("hex");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            let kind = match bytes[4] {
                1 => Kind::Hello,
                2 => Kind::Welcome,
                3 => Kind::Request,
                4 => Kind::Response,
                5 => Kind::Raft,
                6 => Kind::RaftReply,
                _ => Kind::Error,
            };
            (conn, inbound, kind, bytes[5..].to_vec())
        })
        .collect()
}

#[test]
fn recorded_client_frames_of_older_formats_decode() {
    for f in OLDER {
        client_frames_decode(f);
    }
}

fn client_frames_decode(f: u32) {
    let (mut ops, mut statuses, mut kv_sets) = (0, 0, 0);
    for (_, inbound, kind, payload) in frames(f, "client-frames.txt") {
        match kind {
            Kind::Hello => {
                let hello = layout::decode_hello(&payload).expect("hello");
                assert_eq!((hello.protocol, hello.role), (f, Role::Client));
                assert_eq!(hello.token, FIXTURE_TOKEN);
            }
            Kind::Welcome => assert_eq!(
                layout::decode_welcome(&payload).expect("welcome").protocol,
                f
            ),
            Kind::Request => {
                assert!(inbound);
                let op: Op = format::decode(f, &payload[8..]).expect("a recorded request");
                ops += 1;
                if let Op::KvSet { map, .. } = &op {
                    kv_sets += 1;
                    // Format 3 wrote one into app other's realm too.
                    assert!(map == "settings" || map == "other\u{1f}settings", "{map}");
                }
            }
            Kind::Response => {
                let outcome = format::decode_outcome(f, &payload[9..]).expect("a recorded reply");
                if let Ok(Reply::Status(s)) = outcome {
                    statuses += 1;
                    assert_eq!((s.id, s.format_version), (1, f));
                    assert_eq!(s.heads, vec![("main".to_string(), 2)]);
                }
            }
            other => panic!("unexpected {other:?} frame in the client recording"),
        }
    }
    assert!(
        ops >= 10 && statuses >= 1 && kv_sets == if f >= 3 { 4 } else { 3 },
        "format {f}: {ops} {statuses} {kv_sets}"
    );
}

#[test]
fn recorded_peer_frames_of_older_formats_decode() {
    for f in OLDER {
        peer_frames_decode(f);
    }
}

fn peer_frames_decode(f: u32) {
    let (mut appends, mut snapshots, mut replies) = (0, 0, 0);
    for (_, _, kind, payload) in frames(f, "peer-frames.txt") {
        match kind {
            Kind::Hello => {
                let hello = layout::decode_hello(&payload).expect("hello");
                assert_eq!((hello.protocol, hello.role), (f, Role::Peer));
            }
            Kind::Welcome => assert_eq!(
                layout::decode_welcome(&payload).expect("welcome").protocol,
                f
            ),
            Kind::Raft => match format::decode::<RaftRpc>(f, &payload).expect("a recorded rpc") {
                RaftRpc::Append(_) => appends += 1,
                RaftRpc::Vote(_) => {}
                RaftRpc::Snapshot(req) => {
                    snapshots += 1;
                    // The whole snapshot fits one chunk: its state bytes are that format too
                    // (from format 4 with a length, a checksum and a blob section).
                    let mut file = tempfile::tempfile().expect("temp file");
                    file.write_all(&req.data).expect("write");
                    let (state, _) = read_state(&mut file, 0, "snapshot").expect("state");
                    assert_eq!(
                        state.state.kv.get("settings", "greeting"),
                        Some(&Value::Str("hello".into()))
                    );
                }
            },
            Kind::RaftReply => {
                format::decode::<RaftRpcReply>(f, &payload).expect("a recorded rpc reply");
                replies += 1;
            }
            other => panic!("unexpected {other:?} frame in the peer recording"),
        }
    }
    assert!(
        appends >= 3 && snapshots >= 1 && replies >= 3,
        "format {f}: {appends} {snapshots} {replies}"
    );
}

/// Whether the file at `path` is in the current format (its header says so).
fn current(path: &Path, magic: [u8; 8]) -> bool {
    let bytes = std::fs::read(path).expect("read");
    bytes.starts_with(&magic) && bytes.get(8..12) == Some(&FORMAT_VERSION.to_le_bytes()[..])
}

/// What the fixture of format `f` holds, read through a running node.
async fn check_fixture_contents(cluster: &Cluster, f: u32) {
    cluster.wait_leader(Duration::from_secs(30)).await;
    let c = cluster.client(1).await;
    let read = ReadMode::Linearizable;
    assert_eq!(
        get(&c, "settings", "greeting", read).await,
        Some(Value::Str("hello".into()))
    );
    assert_eq!(
        get(&c, "settings", "after-snapshot", read).await,
        Some(Value::Str("yes".into()))
    );
    assert_eq!(get(&c, "counts", "k40", read).await, Some(Value::Int(40)));
    let status = cluster.status(1).await.expect("status");
    assert_eq!(status.heads, vec![("main".to_string(), 2)]);
    assert_eq!(
        (status.format_version, status.min_format_version),
        (FORMAT_VERSION, MIN_FORMAT_VERSION)
    );
    let stats = c.call(Op::QueueStats).await.expect("queue stats");
    let Reply::QueueStats(stats) = stats else {
        panic!("unexpected {stats:?}");
    };
    let jobs = stats.iter().find(|q| q.name == "jobs").expect("queue jobs");
    // Three items, one of them taken with a lease of an hour from when the fixture was made
    // (by now it may have run out, making the item ready again).
    assert_eq!((jobs.ready + jobs.leased, jobs.puts), (3, 3));
    // Format 2 added users.
    let Reply::Users(users) = c.call(Op::UserList).await.expect("users") else {
        panic!("not a user list");
    };
    let names: Vec<_> = users.into_iter().map(|u| u.name).collect();
    let expected: &[&str] = if f >= 2 { &["fixture-operator"] } else { &[] };
    assert_eq!(names, expected, "format {f}");
    if f < 3 {
        return;
    }
    // Format 3 added realms, secrets and config.
    let other = get(&c, "other\u{1f}settings", "greeting", read).await;
    assert_eq!(other, Some(Value::Str("hi from other".into())));
    let secret = c
        .call(Op::SecretGet {
            app: "main".into(),
            name: "api-key".into(),
        })
        .await
        .expect("secret");
    let Reply::Secret(Some(secret)) = secret else {
        panic!("no secret api-key: {secret:?}");
    };
    assert_eq!(secret.0, "fixture-secret-value");
    let Reply::Settings(config) = c
        .call(Op::Config { app: "main".into() })
        .await
        .expect("config")
    else {
        panic!("not a config list");
    };
    let entries: Vec<_> = config.into_iter().map(|e| (e.name, e.value)).collect();
    assert_eq!(entries, [("mode".to_string(), Some("fast".to_string()))]);
}

/// The fixture of the format this release writes, recorded by the release that shipped it:
/// its frames decode, and its data dir serves as it is, a blob file (format 4) included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_formats_fixture_decodes_and_serves() {
    client_frames_decode(FORMAT_VERSION);
    peer_frames_decode(FORMAT_VERSION);
    let cluster = Cluster::launch_from(&fixture(FORMAT_VERSION, "data"), FIXTURE_TOKEN);
    check_fixture_contents(&cluster, FORMAT_VERSION).await;
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("v2");
    let to = cluster.addr(1);
    ok(&cluster.cli(&["export", "2", dir.to_str().expect("utf8"), "--to", &to]));
    let big = std::fs::read(dir.join("static/big.bin")).expect("the exported blob file");
    let pattern: Vec<u8> = (0..65_600u32).map(|i| (i % 251) as u8).collect();
    assert!(
        big == pattern,
        "static/big.bin differs ({} bytes)",
        big.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_data_dirs_upgrade_in_place_on_first_start() {
    for f in OLDER {
        data_dir_upgrades_in_place(f).await;
    }
}

async fn data_dir_upgrades_in_place(f: u32) {
    let mut cluster = Cluster::launch_from(&fixture(f, "data"), FIXTURE_TOKEN);
    check_fixture_contents(&cluster, f).await;
    let data = cluster.data_dir(1).to_path_buf();
    assert!(current(&data.join("log/raft.log"), LOG_MAGIC));
    assert!(current(&data.join("state/snapshot.bin"), SNAPSHOT_MAGIC));

    // `push status` names each node's release and format.
    let out = ok(&cluster.cli(&["status", &cluster.addr(1)]));
    assert!(out.contains("RELEASE") && out.contains("FORMAT"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("1 "))
        .expect("node 1's row");
    assert!(
        row.contains(&format!(" {} ", push_protocol::PUSH_VERSION))
            && row.contains(&format!(" {FORMAT_VERSION} ")),
        "{row}"
    );

    // Data written before realms is app main's: the CLI's `--app main` and main's code read it.
    let a1 = cluster.addr(1);
    let out = ok(&cluster.cli(&[
        "kv", "get", "settings", "greeting", "--app", "main", "--to", &a1,
    ]));
    assert_eq!(out.trim(), "'hello'");
    let out = ok(&cluster.cli(&["eval", &a1, "import push; push.kv('settings')['greeting']"]));
    assert!(out.contains("'hello'"), "{out}");

    // A restart reads the upgraded files.
    cluster.stop(1);
    cluster.restart(1);
    check_fixture_contents(&cluster, f).await;
}

/// Whether the upgrade of a data dir reached a moment.
type Reached = fn(&Path) -> bool;

/// Waits (bounded) until `done` holds, checking every millisecond.
fn wait_for(within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_upgrade_leaves_the_data_loadable() {
    // Kill at three moments: while a file is being written beside the old one, right after
    // the log was replaced (the snapshot not yet), and once a new snapshot file appears.
    let moments: [(&str, Reached); 3] = [
        ("writing", |d| {
            d.join("log/raft.log.migrating").exists()
                || d.join("state/snapshot.bin.migrating").exists()
                || current(&d.join("log/raft.log"), LOG_MAGIC)
        }),
        ("log replaced", |d| {
            current(&d.join("log/raft.log"), LOG_MAGIC)
        }),
        ("snapshot replaced", |d| {
            current(&d.join("state/snapshot.bin"), SNAPSHOT_MAGIC)
        }),
    ];
    for f in OLDER {
        for (moment, reached) in moments {
            let mut cluster = Cluster::launch_from(&fixture(f, "data"), FIXTURE_TOKEN);
            let data = cluster.data_dir(1).to_path_buf();
            wait_for(Duration::from_secs(20), || reached(&data));
            cluster.kill(1);
            cluster.restart(1);
            check_fixture_contents(&cluster, f).await;
            assert!(
                current(&data.join("state/snapshot.bin"), SNAPSHOT_MAGIC),
                "format {f}, killed at {moment}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_a_newer_format_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    copy_dir(&fixture(2, "data"), &data);
    let mut newer = LOG_MAGIC.to_vec();
    newer.extend_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    newer.extend_from_slice(b"records of a future release");
    std::fs::write(data.join("log/raft.log"), &newer).expect("write");
    let snapshot = std::fs::read(data.join("state/snapshot.bin")).expect("snapshot");
    let token = dir.path().join("token");
    std::fs::write(&token, FIXTURE_TOKEN).expect("token");
    let port = free_port();
    let mut child = std::process::Command::new(push_bin())
        .args([
            "node",
            "--id",
            "1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data")
        .arg(&data)
        .arg("--token-file")
        .arg(&token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().expect("wait").is_none() {
        let _ = child.kill();
        panic!("a node on a data dir of a newer format kept running");
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("is in format {}", FORMAT_VERSION + 1))
            && text.contains(&format!("formats {MIN_FORMAT_VERSION} to {FORMAT_VERSION}"))
            && text.contains("newer Push release"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(data.join("log/raft.log")).expect("log"),
        newer
    );
    assert_eq!(
        std::fs::read(data.join("state/snapshot.bin")).expect("snap"),
        snapshot
    );
    assert!(!data.join("log/raft.log.migrating").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_other_formats_agree_on_the_lowest_common_one() {
    let cluster = Cluster::start(1).await;
    let addr = cluster.addr(1);

    // A format-1 client gets format-1 frames, NodeStatus in its old shape included.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(&hello(&cluster.token, 1)).await.expect("hello");
    let welcome = next(&mut s).await.expect("welcome");
    assert_eq!(welcome.kind, Kind::Welcome);
    assert_eq!(
        layout::decode_welcome(&welcome.payload)
            .expect("welcome")
            .protocol,
        1
    );
    let op = format::encode(1, &Op::Status).expect("encode");
    s.write_all(&request(1, &op)).await.expect("request");
    let frame = next(&mut s).await.expect("response");
    assert_eq!(frame.kind, Kind::Response);
    let Ok(Reply::Status(status)) = format::decode_outcome(1, &frame.payload[9..]).expect("decode")
    else {
        panic!("not a status");
    };
    // Read through the old shape, which has no format fields.
    assert_eq!((status.id, status.format_version), (1, 1));

    // A client of a newer release is answered in this release's format.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(&hello(&cluster.token, FORMAT_VERSION + 7))
        .await
        .expect("hello");
    let welcome = next(&mut s).await.expect("welcome");
    assert_eq!(
        layout::decode_welcome(&welcome.payload)
            .expect("welcome")
            .protocol,
        FORMAT_VERSION
    );

    // One older than anything this release speaks is refused, naming both versions.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(&hello(&cluster.token, MIN_FORMAT_VERSION - 1))
        .await
        .expect("hello");
    let refusal = next(&mut s).await.expect("refusal");
    assert_eq!(refusal.kind, Kind::Error);
    let body = error_body(&refusal.payload);
    assert_eq!(body.code, ErrorCode::VersionMismatch);
    assert!(
        body.message
            .contains(&format!("up to {}", MIN_FORMAT_VERSION - 1))
            && body
                .message
                .contains(&format!("formats {MIN_FORMAT_VERSION} to {FORMAT_VERSION}")),
        "{}",
        body.message
    );
}
