//! Replicated data from the shell as the README shows it: `kv cas` with "-" (absent),
//! `kv del`, `kv get --stale` answering from a follower that cannot reach the leader,
//! `push ts NAME --last N`, and the `X-Push-App` header picking the app an HTTP request
//! goes to.

use std::time::{Duration, Instant};

use crate::support::cluster::{fails, ok};
use crate::support::http::{get, request};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_cas_with_a_dash_del_and_stale_reads_from_the_shell() {
    let mut cluster = Cluster::start(2).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = 3 - leader;
    let (la, fa) = (cluster.addr(leader), cluster.addr(follower));

    // "-" as EXPECTED: set only if absent.
    assert_eq!(
        ok(&cluster.cli(&["kv", "cas", "m", "k", "-", "1", "--to", &la])).trim(),
        "ok"
    );
    let err = fails(&cluster.cli(&["kv", "cas", "m", "k", "-", "2", "--to", &la]));
    assert!(err.contains("not set: the current value is 1"), "{err}");
    // "-" as NEW: delete only if it still holds EXPECTED.
    let err = fails(&cluster.cli(&["kv", "cas", "m", "k", "5", "-", "--to", &la]));
    assert!(err.contains("not set: the current value is 1"), "{err}");
    assert_eq!(
        ok(&cluster.cli(&["kv", "cas", "m", "k", "1", "-", "--to", &la])).trim(),
        "ok"
    );
    let err = fails(&cluster.cli(&["kv", "get", "m", "k", "--to", &la]));
    assert!(err.contains("no such key"), "{err}");

    // del: says whether something was deleted.
    ok(&cluster.cli(&["kv", "set", "m", "gone", "\"soon\"", "--to", &la]));
    assert_eq!(
        ok(&cluster.cli(&["kv", "del", "m", "gone", "--to", &fa])).trim(),
        "deleted"
    );
    assert_eq!(
        ok(&cluster.cli(&["kv", "del", "m", "gone", "--to", &fa])).trim(),
        "no such key (nothing deleted)"
    );

    // --stale answers from the follower's own state, also while the leader is paused (a
    // linearizable read there must wait for a leader).
    let index: u64 = ok(&cluster.cli(&["kv", "set", "m", "s", "42", "--to", &la]))
        .trim()
        .trim_start_matches("ok (log index ")
        .trim_end_matches(')')
        .parse()
        .expect("log index");
    cluster
        .wait_applied(follower, index, Duration::from_secs(20))
        .await;
    cluster.pause(leader);
    let out = cluster.cli(&["kv", "get", "m", "s", "--stale", "--to", &fa]);
    cluster.resume(leader);
    assert_eq!(ok(&out).trim(), "42");
    let out = ok(&cluster.cli(&["kv", "list", "m", "--stale", "--to", &fa]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["s"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_last_and_the_app_header() {
    let cluster = Cluster::start(1).await;
    let a1 = cluster.addr(1);
    ok(&cluster.cli(&[
        "eval",
        "--to",
        &a1,
        "push.timeseries('temps').append_many([(1000 + i, 'k', f'reading-{i}') for i in range(5)])",
    ]));
    let out = ok(&cluster.cli(&["ts", "temps", "--last", "2", "--to", &a1]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("reading-3") && lines[1].contains("reading-4"),
        "{out}"
    );
    let out = ok(&cluster.cli(&["ts", "empty", "--to", &a1]));
    assert!(out.contains("empty has no points"), "{out}");

    // Two apps with the same route: the header picks one, its absence means `main`.
    let route = |text: &str| {
        format!("import push\n\n@push.route('GET', '/')\ndef index():\n    return {text:?}\n")
    };
    cluster.deploy_app("main-app", &route("from main"), 1, "main");
    let other = cluster.dir.path().join("other-app");
    std::fs::create_dir_all(&other).expect("dir");
    std::fs::write(other.join("app.py"), route("from other")).expect("write");
    ok(&cluster.cli(&[
        "deploy",
        other.to_str().expect("utf8"),
        "--app",
        "other",
        "--to",
        &a1,
    ]));
    let http = cluster.http(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let main = get(&http, "/").await;
        let picked = request(&http, "GET", "/", &[("X-Push-App", "other")], b"")
            .await
            .expect("request");
        if main.text() == "from main" && picked.text() == "from other" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the header did not pick the app: {:?} / {:?}",
            main.text(),
            picked.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing = request(&http, "GET", "/", &[("X-Push-App", "nope")], b"")
        .await
        .expect("request");
    // An app nobody deployed: the error names it and says what to do.
    assert_eq!(missing.status, 503, "{}", missing.text());
    assert!(
        missing.text().contains("'nope'") && missing.text().contains("push deploy"),
        "{}",
        missing.text()
    );
}
