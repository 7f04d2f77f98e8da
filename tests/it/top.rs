//! `push top`, the live dashboard, in a real pseudo-terminal (tmux): every node with its role,
//! the queues pane, a node killed with -9 turning DOWN while the rest keep updating and coming
//! back, Enter opening a REPL and returning, and `q` restoring the terminal. Also `--once` (plain text) and the refusal without a
//! terminal.

use std::path::Path;
use std::time::{Duration, Instant};

use push_protocol::{Op, Reply, Value};

use crate::support::cluster::{fails, ok, push_bin};
use crate::support::tmux::Tmux;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(10);

async fn put(cluster: &Cluster, id: u64, n: usize) {
    let client = cluster.client(id).await;
    let values = (0..n).map(|i| Value::Int(i as i64)).collect();
    match client
        .call(Op::QueuePut {
            queue: "jobs".into(),
            values,
        })
        .await
    {
        Ok(Reply::Put { ids }) => assert_eq!(ids.len(), n),
        other => panic!("put: {other:?}"),
    }
}

fn hello_web() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/hello-web")
        .display()
        .to_string()
}

/// Waits until the queues pane shows `jobs` with `ready` items ready.
fn wait_ready(term: &Tmux, ready: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let screen = term.screen();
        let shown = screen.lines().any(|l| {
            let cells: Vec<&str> = l
                .split(|c: char| c == '│' || c.is_whitespace())
                .filter(|c| !c.is_empty())
                .collect();
            cells.first() == Some(&"jobs") && cells.get(1) == Some(&ready.to_string().as_str())
        });
        if shown {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "jobs never showed {ready} ready:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_nodes_queues_a_dead_node_and_restores_the_terminal() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3).await;
    cluster.wait_voters(3, WAIT).await;
    let leader = cluster.wait_leader(WAIT).await;
    ok(&cluster.cli(&[
        "deploy",
        &hello_web(),
        "--to",
        &cluster.addr(leader),
        "-m",
        "v1",
    ]));
    put(&cluster, leader, 5).await;

    let term = Tmux::start(&format!(
        "echo BEFORE-TOP; PUSH_HISTORY={} {} top {} --token-file {}; echo AFTER-TOP status=$?; sleep 60",
        cluster.dir.path().join("history").display(),
        push_bin(),
        cluster.addr(leader),
        cluster.token_file.display()
    ));
    // (1) Every node with its role.
    let screen = term.wait_for("nodes up 3/3", WAIT);
    let screen = if screen.matches("follower").count() < 2 {
        term.wait_for_n("follower", 2, WAIT)
    } else {
        screen
    };
    for id in 1..=3 {
        assert!(screen.contains(&cluster.addr(id)), "{screen}");
    }
    assert!(screen.contains(&format!("leader {leader}")), "{screen}");
    // The nodes load the version as their workers come up: a moment after the deploy.
    term.wait_for("main@v1", WAIT);
    assert_eq!(
        term.format("#{alternate_on}"),
        "1",
        "top draws on the alternate screen"
    );

    // (2) A key switches to the queues pane.
    term.key("2");
    let screen = term.wait_for("jobs", WAIT);
    assert!(
        screen.contains("QUEUE") && screen.contains("READY"),
        "{screen}"
    );

    // The deploys pane: the version just deployed is HEAD; the audit section is there (or
    // says why not, on nodes without the audit log).
    term.key("4");
    let screen = term.wait_for("* v1", WAIT);
    // The audit section shows the deploy that made v1.
    assert!(screen.contains("Audit"), "{screen}");
    term.wait_for("version 1, now HEAD", WAIT);

    // (3) kill -9 a follower: it turns DOWN within a few seconds, the rest keep updating.
    term.key("1");
    term.wait_for("nodes up 3/3", WAIT);
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let killed = Instant::now();
    cluster.kill(victim);
    let screen = term.wait_for("DOWN", Duration::from_secs(5));
    let down_after = killed.elapsed();
    assert!(screen.contains("nodes up 2/3"), "{screen}");
    let row = screen
        .lines()
        .find(|l| l.contains(&cluster.addr(victim)))
        .unwrap_or_default();
    assert!(
        row.contains("DOWN"),
        "the killed node's row: {row:?}\n{screen}"
    );
    // Still refreshing: a put made now shows up in the queues pane (5 + 3 ready).
    put(&cluster, leader, 3).await;
    term.key("2");
    wait_ready(&term, 8);
    // The node comes back and is shown up again.
    cluster.restart(victim);
    term.key("1");
    term.wait_for("nodes up 3/3", Duration::from_secs(15));

    // Enter on a node opens a REPL on it; leaving the REPL brings the dashboard back.
    term.key("Enter");
    term.wait_for("node1/w", WAIT);
    assert_eq!(
        term.format("#{alternate_on}"),
        "0",
        "the REPL runs on the normal screen"
    );
    term.line("'top' + 'repl'");
    term.wait_for("'toprepl'", WAIT);
    term.key("C-d");
    term.wait_for("repl on node 1 ended", WAIT);
    term.wait_for("nodes up 3/3", WAIT);
    assert_eq!(term.format("#{alternate_on}"), "1");

    // (4) q quits and the terminal is back on the normal screen with the shell's output.
    term.key("q");
    let screen = term.wait_for("AFTER-TOP status=0", WAIT);
    assert!(screen.contains("BEFORE-TOP"), "{screen}");
    assert!(
        !screen.contains("nodes up"),
        "dashboard left on screen:\n{screen}"
    );
    assert_eq!(term.format("#{alternate_on}"), "0");
    eprintln!(
        "push top: kill -9 shown as DOWN after {down_after:?}; test took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_a_plain_snapshot_and_no_terminal_is_refused() {
    let cluster = Cluster::start(3).await;
    cluster.wait_voters(3, WAIT).await;
    let leader = cluster.wait_leader(WAIT).await;
    put(&cluster, leader, 2).await;
    let addr = cluster.addr(leader);
    ok(&cluster.cli(&["eval", &addr, "'audited from top test'"]));
    // Eval records land in the audit log in the background: wait for this one.
    let deadline = std::time::Instant::now() + WAIT;
    while !ok(&cluster.cli(&["audit", "--to", &addr])).contains("audited from top test") {
        assert!(std::time::Instant::now() < deadline, "eval never audited");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let out = ok(&cluster.cli(&["top", &addr, "--once"]));
    assert!(out.contains(&format!("leader {leader}")), "{out}");
    for id in 1..=3 {
        assert!(out.contains(&cluster.addr(id)), "{out}");
    }
    assert_eq!(out.matches("follower").count(), 2, "{out}");
    assert!(out.contains("QUEUES") && out.contains("jobs"), "{out}");
    // The audit section lists the eval, with who asked for it.
    assert!(out.contains("AUDIT"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("audited from top test"))
        .unwrap_or_else(|| panic!("no audit line for the eval: {out}"));
    assert!(
        line.contains("eval") && line.contains("(push eval;"),
        "{line}"
    );
    // Without --once and without a terminal (stdout is a pipe here), a clear refusal.
    let err = fails(&cluster.cli(&["top", &addr]));
    assert!(
        err.contains("needs a terminal") && err.contains("--once"),
        "{err}"
    );
}
