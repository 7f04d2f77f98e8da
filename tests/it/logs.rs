//! Structured logs on a real 3-node cluster: app `logging` records from a daemon, an HTTP
//! handler and an eval reach `push logs` (text and JSON) tagged with node, app, version and
//! source, still show in `push tail`, reach the node's JSON stderr with their fields, and
//! `push logs --follow` (a child process, killed by PID) prints new records as they come.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use push_protocol::{Op, Reply};

use crate::support::cluster::{ok, push_bin};
use crate::support::{http, Cluster};

const APP: &str = r#"
import logging

import push

log = logging.getLogger(__name__)


@push.daemon
def ticker(ctx):
    n = 0
    while ctx.sleep(0.2):
        n += 1
        log.info("tick %d", n)
        if n == 3:
            ctx.log.warning("ctx log at tick %d", n)


@push.route("GET", "/hello")
def hello():
    log.warning("hello handler called")
    return "hello"
"#;

fn deploy(cluster: &Cluster) {
    cluster.deploy_app("app", APP, 1, "logs test");
}

/// Runs `push ARGS` until its output contains every one of `wanted`, or panics after `within`.
fn wait_cli(cluster: &Cluster, args: &[&str], wanted: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let out = ok(&cluster.cli(args));
        if wanted.iter().all(|w| out.contains(w)) {
            return out;
        }
        if Instant::now() > deadline {
            panic!(
                "`push {}` never showed {wanted:?}; last output:\n{out}\n{}",
                args.join(" "),
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_logging_reaches_push_logs_tail_and_json_stderr() {
    let cluster = Cluster::start_with(3, &["--log-format", "json"]).await;
    deploy(&cluster);
    let a1 = cluster.addr(1);

    // The daemon's records, on whichever node runs it, tagged app@version and daemon name.
    let out = wait_cli(
        &cluster,
        &["logs", &a1, "--daemon", "ticker"],
        &["[main@v1 ticker] app: tick 2", "ctx log at tick 3"],
        Duration::from_secs(30),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.iter().all(|l| l.contains("[main@v1 ticker]")),
        "--daemon kept only ticker's records:\n{out}"
    );
    let node = lines
        .iter()
        .find(|l| l.contains("app: tick 2"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("a node column")
        .to_string();
    assert!(node.starts_with("node"), "{out}");
    assert!(
        out.contains("WARN  [main@v1 ticker] push.task.ticker: ctx log at tick 3"),
        "ctx.log records are tagged too:\n{out}"
    );

    // `push tail` still has the daemon's logging lines (teed into the unit's ring).
    wait_cli(
        &cluster,
        &["tail", "ticker", "--to", &a1],
        &["INFO tick 2", "WARNING ctx log at tick 3"],
        Duration::from_secs(10),
    );

    // An HTTP handler and an eval log too; both show without --daemon, with their source.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http::get(&cluster.http(2), "/hello").await.status != 200 {
        assert!(Instant::now() < deadline, "hello never served on node 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = cluster.client(3).await;
    let eval = Op::Eval {
        session: None,
        code: "import logging; logging.getLogger('probe').error('from an eval')".into(),
        module: None,
    };
    assert!(matches!(client.call(eval).await, Ok(Reply::Evaluated(r)) if r.error.is_none()));
    let out = wait_cli(
        &cluster,
        &["logs", &a1],
        &[
            "node2 WARN  [main@v1 route GET /hello] app: hello handler called",
            "node3 ERROR [- eval] probe: from an eval",
            "node listening",
        ],
        Duration::from_secs(10),
    );
    assert!(out.contains("node1 "), "node events of every node:\n{out}");

    // --json: one object per record with the same fields.
    let out = ok(&cluster.cli(&["logs", &a1, "--daemon", "ticker", "--json"]));
    let record: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .find(|r| r["message"] == "tick 2")
        .unwrap_or_else(|| panic!("no tick 2 in\n{out}"));
    assert_eq!(record["app"], "main");
    assert_eq!(record["version"], 1);
    assert_eq!(record["source"], "ticker");
    assert_eq!(record["logger"], "app");
    assert_eq!(record["level"], "info");
    assert!(record["seq"].as_u64().is_some_and(|s| s > 0));

    // --level keeps warn and above.
    let out = ok(&cluster.cli(&["logs", &a1, "--daemon", "ticker", "--level", "warn"]));
    assert!(
        out.contains("ctx log at tick 3") && !out.contains("tick 2"),
        "{out}"
    );

    // The node's own stderr (--log-format json) has the app record with its fields.
    let mut found = None;
    for id in 1..=3 {
        let text =
            std::fs::read_to_string(cluster.data_dir(id).join("node.log")).unwrap_or_default();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["fields"]["message"] == "tick 2" {
                found = Some((id, v));
            }
        }
    }
    let (id, v) = found.unwrap_or_else(|| panic!("no JSON record of tick 2\n{}", cluster.logs()));
    assert_eq!(format!("node{id}"), node, "stderr of the node that ran it");
    assert_eq!(v["target"], "app");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["app"], "main");
    assert_eq!(v["fields"]["version"], 1);
    assert_eq!(v["fields"]["source"], "ticker");
    assert_eq!(v["fields"]["logger"], "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_logs_follow_prints_new_records_as_they_come() {
    let cluster = Cluster::start(3).await;
    deploy(&cluster);
    wait_cli(
        &cluster,
        &["logs", &cluster.addr(2), "--daemon", "ticker"],
        &["tick 1"],
        Duration::from_secs(30),
    );
    let mut child = Command::new(push_bin())
        .args(["logs", &cluster.addr(2), "--follow", "--daemon", "ticker"])
        .arg("--token-file")
        .arg(&cluster.token_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn push logs --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        if let Ok(item) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(item);
        }
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child by its PID.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = child.wait();
    let _ = reader.join();

    let ticks: Vec<u64> = lines
        .iter()
        .filter_map(|(_, l)| {
            l.rsplit_once("app: tick ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect();
    assert!(
        ticks.windows(2).all(|w| w[0] < w[1]),
        "each record printed once, in order: {ticks:?}"
    );
    // The backlog comes at once; records logged after the start arrive while it runs.
    let late = lines
        .iter()
        .filter(|(at, l)| *at > started + Duration::from_millis(1500) && l.contains("app: tick "))
        .count();
    assert!(
        ticks.len() >= 10 && late >= 3,
        "--follow kept printing: {} ticks, {late} late\n{:?}",
        ticks.len(),
        lines.iter().map(|(_, l)| l).collect::<Vec<_>>()
    );
}
