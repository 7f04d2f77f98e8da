//! What a newcomer meets at the shell: printing commands piped into `head` end quietly, a
//! refused token says where it came from, and the REPL's prompt names the HEAD of the app the
//! session works on.

use std::process::{Command, Stdio};

use crate::support::cluster::{fails, ok, push_bin};
use crate::support::Cluster;

/// Runs `push ARGS` with its stdout a pipe whose reading end is already closed (what `| head
/// -1` leaves once it has its line); returns (exit code, stderr).
fn into_closed_pipe(cluster: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    // A socket pair stands in for the pipe: writing to it once the peer is gone also raises
    // SIGPIPE / EPIPE, exactly as a pipe does.
    let (reader, writer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    drop(reader);
    let writer = std::os::fd::OwnedFd::from(writer);
    let out = Command::new(push_bin())
        .args(args)
        .arg("--token-file")
        .arg(&cluster.token_file)
        .env_remove("PUSH_TOKEN")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run push");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_into_a_closed_pipe_exits_quietly() {
    let cluster = Cluster::start(1).await;
    cluster.deploy_app("piped", "import push\n", 1, "v1");
    let addr = cluster.addr(1);
    for args in [
        vec!["status", "--to", &addr],
        vec!["versions", "--to", &addr],
        vec!["logs", "--to", &addr],
        vec!["kv", "list", "nothing", "--to", &addr],
    ] {
        let (code, err) = into_closed_pipe(&cluster, &args);
        assert!(
            !err.contains("panicked") && code != Some(101),
            "`push {}` into a closed pipe: exit {code:?}, stderr: {err}",
            args.join(" ")
        );
        assert!(
            err.is_empty(),
            "`push {}` should say nothing: {err}",
            args.join(" ")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_says_where_it_came_from() {
    let cluster = Cluster::start(1).await;
    let here = cluster.dir.path().join("workdir");
    std::fs::create_dir_all(here.join(".push")).expect("mkdir");
    std::fs::copy(&cluster.token_file, here.join(".push/token")).expect("copy token");
    let run = |env_token: Option<&str>| {
        let mut cmd = Command::new(push_bin());
        cmd.args(["versions", "--to", &cluster.addr(1)])
            .current_dir(&here)
            .env_remove("PUSH_TOKEN")
            .env_remove("PUSH_ADDR")
            .stdin(Stdio::null());
        if let Some(t) = env_token {
            cmd.env("PUSH_TOKEN", t);
        }
        cmd.output().expect("run push")
    };
    // The right token from .push/token works ...
    ok(&run(None));
    // ... and a stale PUSH_TOKEN silently took over before; now the refusal names it.
    let err = fails(&run(Some("stale-token-from-another-cluster")));
    assert!(
        err.contains("$PUSH_TOKEN, which overrides .push/token")
            && err.contains("unset PUSH_TOKEN"),
        "{err}"
    );
    let err = fails(
        &Command::new(push_bin())
            .args(["versions", "--to", &cluster.addr(1), "--token", "wrong"])
            .env_remove("PUSH_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run push"),
    );
    assert!(err.contains("refused the token from --token"), "{err}");
}
