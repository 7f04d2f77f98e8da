//! The code store from the shell: deploy, versions, rollback, diff.

use crate::support::cluster::{fails, ok};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_versions_rollback_diff_round_trip() {
    let cluster = Cluster::start(3).await;
    let app = cluster.dir.path().join("hello");
    std::fs::create_dir_all(app.join("lib")).expect("dirs");
    std::fs::create_dir_all(app.join("__pycache__")).expect("dirs");
    std::fs::write(
        app.join("app.py"),
        "from lib import util\n\ndef hello():\n    return util.greet('v1')\n",
    )
    .expect("write");
    std::fs::write(
        app.join("lib/util.py"),
        "def greet(v):\n    return 'hello ' + v\n",
    )
    .expect("write");
    std::fs::write(app.join("__pycache__/junk.py"), "ignored").expect("write");
    // Text files deploy beside the modules (templates, data); __pycache__ does not.
    std::fs::write(app.join("README.txt"), "not code").expect("write");
    let dir = app.to_str().expect("utf8");
    let (a1, a2, a3) = (cluster.addr(1), cluster.addr(2), cluster.addr(3));

    let out = ok(&cluster.cli(&["deploy", dir, "--to", &a2, "-m", "first"]));
    assert!(out.contains("main@v1 (3 files"), "{out}");

    // Identical tree: no new version, and the CLI says so.
    let out = ok(&cluster.cli(&["deploy", dir, "--to", &a3]));
    assert!(
        out.contains("nothing to deploy") && out.contains("v1"),
        "{out}"
    );

    std::fs::write(
        app.join("lib/util.py"),
        "def greet(v):\n    return 'HELLO ' + v\n",
    )
    .expect("write");
    let out = ok(&cluster.cli(&["deploy", dir, "--to", &a1, "-m", "shout"]));
    assert!(
        out.contains("main@v2") && out.contains("1 uploaded"),
        "only the changed blob is uploaded: {out}"
    );

    // Stored but not activated.
    std::fs::write(app.join("extra.py"), "X = 1\n").expect("write");
    let out = ok(&cluster.cli(&["deploy", dir, "--to", &a1, "-m", "staged", "--no-activate"]));
    assert!(
        out.contains("main@v3") && out.contains("HEAD unchanged"),
        "{out}"
    );

    let out = ok(&cluster.cli(&["versions", "--to", &a3]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("v3") && lines[0].contains("staged") && !lines[0].starts_with('*'),
        "{out}"
    );
    assert!(
        lines[1].starts_with("* v2") && lines[1].contains("shout"),
        "{out}"
    );
    assert!(
        lines[2].contains("v1") && lines[2].contains("first"),
        "{out}"
    );

    let out = ok(&cluster.cli(&["diff", "v1", "v3", "--to", &a2]));
    assert!(
        out.contains("--- v1/lib/util.py") && out.contains("+++ v3/lib/util.py"),
        "{out}"
    );
    assert!(
        out.contains("-    return 'hello ' + v") && out.contains("+    return 'HELLO ' + v"),
        "{out}"
    );
    assert!(
        out.contains("--- /dev/null") && out.contains("+++ v3/extra.py") && out.contains("+X = 1"),
        "{out}"
    );
    let out = ok(&cluster.cli(&["diff", "2", "2", "--to", &a2]));
    assert!(out.contains("identical"), "{out}");

    // Roll back to the parent, then forward to the staged version by number.
    let out = ok(&cluster.cli(&["rollback", "--to", &a2]));
    assert!(out.contains("from v2 to v1"), "{out}");
    let out = ok(&cluster.cli(&["rollback", "v3", "--to", &a3]));
    assert!(out.contains("from v1 to v3"), "{out}");

    // A version that does not exist: a clear error, HEAD unchanged.
    let err = fails(&cluster.cli(&["rollback", "42", "--to", &a1]));
    assert!(
        err.contains("no version 42") && err.contains("push versions"),
        "{err}"
    );
    let err = fails(&cluster.cli(&["rollback", "banana", "--to", &a1]));
    assert!(err.contains("not a version number"), "{err}");
    let out = ok(&cluster.cli(&["versions", "--to", &a1]));
    assert!(
        out.lines().next().expect("line").starts_with("* v3"),
        "{out}"
    );

    // Every node reports the same HEAD.
    for id in 1..=3 {
        let s = cluster.status(id).await.expect("status");
        assert_eq!(s.heads, vec![("main".to_string(), 3)], "node {id}");
    }
    let out = ok(&cluster.cli(&["status", &a1]));
    assert_eq!(out.matches("main@v3").count(), 3, "{out}");

    // Deploying a directory without modules says what is wrong.
    let empty = cluster.dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let err = fails(&cluster.cli(&["deploy", empty.to_str().expect("utf8"), "--to", &a1]));
    assert!(err.contains("no .py files"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_deploy_shows_progress_and_lands_whole() {
    let cluster = Cluster::start(3).await;
    let app = cluster.dir.path().join("big");
    std::fs::create_dir_all(&app).expect("dir");
    std::fs::write(app.join("push.ron"), "(entry: \"mod00\")").expect("write");
    for i in 0..60 {
        // ~50 KB modules: several upload batches.
        let body = format!(
            "# module {i}\n{}",
            format!("X_{i} = '{}'\n", "y".repeat(100)).repeat(500)
        );
        std::fs::write(app.join(format!("mod{i:02}.py")), body).expect("write");
    }
    let dir = app.to_str().expect("utf8");
    let out = cluster.cli(&["deploy", dir, "--to", &cluster.addr(2)]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("main@v1 (61 files, 61 uploaded)"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("uploading (bytes)") && stderr.contains("(100%)"),
        "{stderr}"
    );
    // Without an entry module the deploy gate refuses, naming the fix; blobs already stored
    // are not uploaded again.
    std::fs::remove_file(app.join("push.ron")).expect("rm");
    std::fs::write(app.join("mod00.py"), "CHANGED = True\n").expect("write");
    let out = cluster.cli(&["deploy", dir, "--to", &cluster.addr(3)]);
    let err = fails(&out);
    assert!(
        err.contains("no entry module 'app'") && err.contains("push.ron"),
        "{err}"
    );
    assert!(
        err.contains("uploading (bytes) 15/15 (100%)"),
        "only the changed module is uploaded: {err}"
    );
}
