//! The replicated audit log: deploys, rollbacks, restarts, evals and hot-patches, recorded
//! with who and through which node, readable from any node with `push audit` and `:audit`.

use std::time::{Duration, Instant};

use crate::repl::run_script;
use crate::support::cluster::{fails, ok};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_rollbacks_evals_and_hot_patches_are_audited_with_who_and_where() {
    let cluster = Cluster::start(3).await;
    let app = cluster.dir.path().join("shop");
    std::fs::create_dir_all(&app).expect("dir");
    std::fs::write(app.join("app.py"), "def price():\n    return 1\n").expect("write");
    let dir = app.to_str().expect("utf8");
    let (a1, a2, a3) = (cluster.addr(1), cluster.addr(2), cluster.addr(3));

    ok(&cluster.cli(&["deploy", dir, "--to", &a2, "-m", "first"]));
    std::fs::write(app.join("app.py"), "def price():\n    return 2\n").expect("write");
    ok(&cluster.cli(&["deploy", dir, "--to", &a3, "-m", "second"]));
    // A refused deploy changes nothing and is not recorded as one.
    std::fs::write(app.join("app.py"), "def price(:\n").expect("write");
    fails(&cluster.cli(&["deploy", dir, "--to", &a1, "-m", "broken"]));
    ok(&cluster.cli(&["rollback", "--to", &a1]));
    ok(&cluster.cli(&["eval", "--to", &a3, "6 * 7"]));
    ok(&cluster.cli(&[
        "eval",
        "--to",
        &a2,
        "--module",
        "app",
        "def price():\n    return 3\n",
    ]));
    // A read-only call evaluated in the module patches nothing: it is an eval.
    ok(&cluster.cli(&["eval", "--to", &a2, "--module", "app", "price() + 100"]));

    // Eval records are proposed in the background: wait for them to land.
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = ok(&cluster.cli(&["audit", "--to", &a1]));
        if out.contains("in app: price() + 100") || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let actions: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(5))
        // The cluster's own membership changes (nodes 2 and 3 joining) come first.
        .filter(|a| !a.starts_with("member-"))
        .collect();
    assert_eq!(
        actions,
        ["deploy", "deploy", "rollback", "eval", "hot-patch", "eval"],
        "{out}"
    );
    assert!(
        out.contains("version 1, now HEAD — 1 files: first"),
        "{out}"
    );
    assert!(out.contains("HEAD 2 → 1"), "{out}");
    assert!(out.contains("6 * 7"), "{out}");
    let patch = out.lines().find(|l| l.contains("in app: def price()"));
    assert!(patch.is_some_and(|l| l.contains("hot-patch")), "{out}");
    let read = out.lines().find(|l| l.contains("in app: price() + 100"));
    assert!(
        read.is_some_and(|l| l.contains(" eval ") && !l.contains("hot-patch")),
        "a read-only module eval is an eval: {out}"
    );
    assert!(
        !out.contains("broken"),
        "a refused deploy is not audited: {out}"
    );
    // Who: program and user, and which node took the request.
    assert!(out.contains("(push deploy;"), "{out}");
    assert!(out.contains("(push rollback;"), "{out}");
    assert!(out.contains("from 127.0.0.1"), "{out}");
    let rollback = out
        .lines()
        .find(|l| l.contains("rollback"))
        .expect("rollback line");
    assert!(rollback.contains("node 1"), "{rollback}");

    // Filtered and as JSON, from another node: the log is replicated.
    let out = ok(&cluster.cli(&["audit", "--to", &a3, "--action", "deploy", "--json"]));
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(entries.len(), 2, "{out}");
    assert_eq!(entries[0]["node"], 2);
    assert_eq!(entries[1]["node"], 3);
    assert_eq!(entries[1]["app"], "main");
    assert!(entries[0]["seq"].as_u64() < entries[1]["seq"].as_u64());

    // The REPL's :audit, and its own eval recorded as from `push repl`.
    let (_, stdout, stderr) = run_script(&cluster, "1 + 1\n:audit 3\n");
    assert!(stdout.contains("eval"), "{stdout}{stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ok(&cluster.cli(&["audit", "--to", &a2, "-n", "1"]));
        if out.contains("(push repl;") && out.contains("1 + 1") {
            break;
        }
        assert!(Instant::now() < deadline, "repl eval not audited: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_survives_a_full_restart_and_follow_prints_new_entries() {
    let mut cluster = Cluster::start(3).await;
    let a1 = cluster.addr(1);
    ok(&cluster.cli(&["eval", "--to", &a1, "'before restart'"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(&cluster.cli(&["audit", "--to", &a1])).contains("before restart") {
        assert!(Instant::now() < deadline, "eval never audited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    cluster.wait_leader(Duration::from_secs(20)).await;
    let out = ok(&cluster.cli(&["audit", "--to", &cluster.addr(2)]));
    assert!(out.contains("before restart"), "{out}");

    // --follow prints entries recorded after it started: wait until it runs (its backlog is
    // on screen), then make a new eval with a marker no earlier entry has, and see it arrive.
    let mut follow = std::process::Command::new(crate::support::cluster::push_bin())
        .args([
            "audit",
            "--follow",
            "--to",
            &cluster.addr(3),
            "--token-file",
        ])
        .arg(&cluster.token_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn push audit --follow");
    let lines = crate::support::lines_of(follow.stdout.take().expect("stdout"));
    let mut seen = String::new();
    let backlog = wait_line(&lines, &mut seen, "before restart", Duration::from_secs(20));
    let marker = format!("followed-{}", std::process::id());
    assert!(!seen.contains(&marker), "{seen}");
    ok(&cluster.cli(&["eval", "--to", &a1, &format!("'{marker}'")]));
    let arrived = wait_line(&lines, &mut seen, &marker, Duration::from_secs(20));
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        backlog && arrived,
        "--follow did not print the new eval: {seen}"
    );
    let line = seen
        .lines()
        .find(|l| l.contains(&marker))
        .expect("marker line");
    assert!(line.contains(" eval ") && line.contains("node 1"), "{line}");
}

/// Reads lines into `seen` until one contains `text` (true) or `within` passes (false).
fn wait_line(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut String,
    text: &str,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(text) {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}
