//! `push daemons` says why a daemon could not be placed: which requirement (tag, GPU, cores,
//! memory, a pinned node) no live node meets.

use std::time::{Duration, Instant};

use crate::support::cluster::ok;
use crate::support::Cluster;

const APP: &str = r#"
import push

@push.daemon(where="ssd")
def indexer(ctx):
    while ctx.sleep(1):
        pass

@push.daemon(where={"gpu": True})
def trainer(ctx):
    while ctx.sleep(1):
        pass

@push.daemon(where={"cores": 100000})
def cruncher(ctx):
    while ctx.sleep(1):
        pass

@push.daemon(on=9)
def pinned(ctx):
    while ctx.sleep(1):
        pass

@push.daemon()
def anywhere(ctx):
    while ctx.sleep(1):
        pass
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_daemons_names_the_requirement_no_live_node_meets() {
    let cluster = Cluster::start_with(2, &["--gpu", "false"]).await;
    cluster.deploy_app("placed", APP, 1, "placement");
    let wants = [
        ("indexer", "no live node has tag ssd (live: 1, 2)"),
        ("trainer", "no live node has a GPU (live: 1, 2)"),
        ("cruncher", "no live node has 100000 cores (live: 1, 2)"),
        ("pinned", "on=9 but node 9 is not live (live: 1, 2)"),
    ];
    // The leader places the units once both nodes have sent a heartbeat.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = ok(&cluster.cli(&["daemons", "--to", &cluster.addr(2)]));
        let placed = out
            .lines()
            .any(|l| l.starts_with("anywhere") && !l.contains("unplaced"));
        if placed && wants.iter().all(|(_, why)| out.contains(why)) {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "push daemons did not explain the placement:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Each reason sits under its own daemon's row.
    let lines: Vec<&str> = out.lines().collect();
    for (name, why) in wants {
        let at = lines
            .iter()
            .position(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"));
        assert!(lines[at].contains("unplaced"), "{out}");
        assert_eq!(lines[at + 1].trim(), why, "{out}");
    }
}
