//! Users over time (issue 18) against a real 3-node cluster: revocation and rotation while a
//! connection and a REPL are open; an expired user; `push login`'s 0600 credentials file and
//! `push status` saying who you are.

use std::process::Command;
use std::time::{Duration, Instant};

use push_protocol::{Client, ErrorCode, Op};

use crate::roles::{add_user, call_outcome, connect, WAIT};
use crate::support::cluster::{fails, ok, push_bin, with_stdin};
use crate::support::tmux::Tmux;
use crate::support::Cluster;

/// Waits (bounded) until `op` on `client` is refused as unauthorized; returns the refusal and
/// how long it took.
async fn until_refused(client: &Client, op: Op) -> (String, Duration) {
    let start = Instant::now();
    loop {
        match call_outcome(client, op.clone()).await {
            Err(e) if e.code == ErrorCode::Unauthorized => return (e.message, start.elapsed()),
            other => assert!(
                start.elapsed() < Duration::from_secs(15),
                "still served 15 s later: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_rotate_apply_to_open_connections_and_expiry_is_refused() {
    let cluster = Cluster::start(3).await;
    let status = Op::Status;
    let alice = add_user(&cluster, "alice", "operator", &[]);
    // Open on every node before the revoke.
    let mut open = Vec::new();
    for id in 1..=3 {
        let client = connect(&cluster.addr(id), &alice).await;
        call_outcome(&client, status.clone()).await.expect("served");
        open.push(client);
    }
    let out = ok(&cluster.cli(&["user", "revoke", "alice", "--to", &cluster.addr(2)]));
    assert!(out.contains("revoked alice"), "{out}");
    for (i, client) in open.iter().enumerate() {
        let (message, took) = until_refused(client, status.clone()).await;
        assert!(message.contains("revoked"), "{message}");
        eprintln!(
            "node {}: revoke applied to an open connection after {took:?}",
            i + 1
        );
    }
    let e = Client::connect(&cluster.addr(1), &alice)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    let err = fails(&cluster.cli(&["user", "revoke", "alice", "--to", &cluster.addr(1)]));
    assert!(
        err.contains("no user with the name or accessor \"alice\""),
        "{err}"
    );

    // Rotation: the old secret stops working on an open connection; the new one works.
    let bob = add_user(&cluster, "bob", "viewer", &[]);
    let client = connect(&cluster.addr(3), &bob).await;
    let out = ok(&cluster.cli(&["user", "rotate", "bob", "--to", &cluster.addr(1)]));
    let new = out
        .lines()
        .find(|l| l.starts_with("push_"))
        .expect("new secret");
    assert_ne!(new, bob);
    let (message, _) = until_refused(&client, status.clone()).await;
    assert!(message.contains("push user rotate"), "{message}");
    let fresh = connect(&cluster.addr(3), new).await;
    call_outcome(&fresh, status.clone())
        .await
        .expect("the new secret works");

    // Expiry: refused once it passes, at the handshake and on an open connection.
    let brief = add_user(&cluster, "brief", "viewer", &["--expires", "5s"]);
    let client = connect(&cluster.addr(1), &brief).await;
    let (message, _) = until_refused(&client, status.clone()).await;
    assert!(message.contains("user brief expired"), "{message}");
    let e = Client::connect(&cluster.addr(2), &brief)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("expired"), "{e}");

    // Bad input: a role that does not exist, a bad duration, a duplicate name.
    let err = fails(&cluster.cli(&["user", "add", "x", "--role", "root"]));
    assert!(
        err.contains("viewer, operator, deployer, developer and admin"),
        "{err}"
    );
    let err = fails(&cluster.cli(&["user", "add", "x", "--role", "viewer", "--expires", "soon"]));
    assert!(err.contains("30d, 12h"), "{err}");
    let err = fails(&cluster.cli(&[
        "user",
        "add",
        "bob",
        "--role",
        "viewer",
        "--to",
        &cluster.addr(1),
    ]));
    assert!(err.contains("push user rotate bob"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repl_says_who_you_are_and_a_revoke_stops_it() {
    let cluster = Cluster::start(1).await;
    let dev = add_user(&cluster, "dev", "developer", &[]);
    let term = Tmux::start(&format!(
        "PUSH_HISTORY={} {} repl {} --token {dev}",
        cluster.dir.path().join("history").display(),
        push_bin(),
        cluster.addr(1),
    ));
    term.wait_for("You are dev (developer).", WAIT);
    term.wait_for("dev@node1/w", WAIT);
    term.wait_for("(leader) >>>", WAIT);
    term.line("print('before', 20 + 1)");
    term.wait_for("before 21", WAIT);
    ok(&cluster.cli(&["user", "revoke", "dev", "--to", &cluster.addr(1)]));
    term.line("print('after', 20 + 2)");
    let screen = term.wait_for("revoked", WAIT);
    assert!(
        !screen.contains("after 22"),
        "ran after the revoke:\n{screen}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_the_secret_owner_only_and_status_says_who_you_are() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start(3).await;
    let carol = add_user(&cluster, "carol", "viewer", &[]);
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("a directory without .push");
    let push = |args: &[&str], stdin: &str| {
        with_stdin(
            Command::new(push_bin())
                .args(args)
                .current_dir(work.path())
                .env("HOME", home.path())
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("PUSH_ADDR")
                .env_remove("PUSH_TOKEN"),
            stdin,
        )
    };
    let err = fails(&push(&["login", &cluster.addr(1)], "not-a-secret\n"));
    assert!(err.contains("not a user secret"), "{err}");
    let out = ok(&push(&["login", &cluster.addr(1)], &format!("{carol}\n")));
    assert!(out.contains("as carol (viewer)"), "{out}");
    let file = home.path().join(".config/push/credentials");
    let mode = std::fs::metadata(&file)
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Any node of that cluster uses the login; the CLI says who you are and where from.
    let out = ok(&push(&["status", &cluster.addr(2)], ""));
    assert!(out.contains("you are carol (viewer)"), "{out}");
    let err = fails(&push(
        &["kv", "set", "m", "k", "1", "--to", &cluster.addr(3)],
        "",
    ));
    assert!(
        err.contains("needs the operator role; you are carol (viewer)"),
        "{err}"
    );
    // A file others can read is refused, saying how to fix it.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = fails(&push(&["status", &cluster.addr(2)], ""));
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    ok(&push(&["logout", &cluster.addr(3)], ""));
    let err = fails(&push(&["status", &cluster.addr(1)], ""));
    assert!(err.contains("push login"), "{err}");
}
