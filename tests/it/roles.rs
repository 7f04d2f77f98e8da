//! Users and roles (issue 18) against a real 3-node cluster: one table where every role, and a
//! user scoped to one app, tries every class of operation (allowed, or refused naming the role
//! it needs, the app, and the user's), secrets and config and another app's realm included;
//! revocation and rotation while a connection and a REPL are open; an expired user; the audit
//! log naming the authenticated user; `push login`'s 0600 credentials file.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use push_protocol::{
    ByteBuf, Client, ClientError, ErrorCode, Op, Outcome, ReadMode, SecretText, Value,
};

use crate::support::cluster::{fails, ok, push_bin};
use crate::support::tmux::Tmux;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(20);

/// Creates user `name` with `role` (and `extra` flags) through the CLI; returns its secret.
fn add_user(cluster: &Cluster, name: &str, role: &str, extra: &[&str]) -> String {
    let to = cluster.addr(1);
    let mut args = vec!["user", "add", name, "--role", role, "--to", &to];
    args.extend_from_slice(extra);
    let out = ok(&cluster.cli(&args));
    out.lines()
        .find(|l| l.starts_with("push_"))
        .unwrap_or_else(|| panic!("no secret printed: {out}"))
        .to_string()
}

/// Runs the CLI with `token` (a user's secret) and nothing else to find a credential.
fn cli_as(cluster: &Cluster, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(push_bin())
        .args(args)
        .args(["--token", token])
        .current_dir(cluster.dir.path())
        .env_remove("PUSH_ADDR")
        .env_remove("PUSH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run push")
}

/// Connects with a user's secret, waiting (bounded) until the node has applied the user: a
/// user added through another node may not have reached this one yet.
async fn connect(addr: &str, token: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match Client::connect(addr, token).await {
            Ok(client) => return client,
            Err(e)
                if e.to_string().contains("no user has the accessor")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("connect to {addr}: {e}"),
        }
    }
}

type Call = fn(&Client) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;

/// One operation class: its name, the weakest role allowed it, the app it acts on (for a
/// user scoped to apps), and one request of it.
struct Class {
    name: &'static str,
    needs: &'static str,
    app: Option<&'static str>,
    call: Call,
}

macro_rules! class {
    ($name:literal, $needs:literal, $app:expr, $op:expr) => {
        Class {
            name: $name,
            needs: $needs,
            app: $app,
            call: |c| Box::pin(call_outcome(c, $op)),
        }
    };
}

/// The app of the scoped user in the table, and of the realm classes.
const SHOP: &str = "shop";
const MAIN: Option<&str> = Some("main");

fn in_shop(name: &str) -> String {
    push_protocol::realm::qualify(SHOP, name).expect("a realm name")
}

/// A request's outcome: the reply or the node's error (a transport failure fails the test).
async fn call_outcome(client: &Client, op: Op) -> Outcome {
    match client.call(op).await {
        Ok(reply) => Ok(reply),
        Err(ClientError::Server(body)) => Err(body),
        Err(e) => panic!("transport failure: {e}"),
    }
}

const ROLES: [&str; 5] = ["viewer", "operator", "deployer", "developer", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).expect("a role")
}

fn classes() -> Vec<Class> {
    vec![
        class!("status", "viewer", None, Op::Status),
        class!(
            "kv read",
            "viewer",
            MAIN,
            Op::KvGet {
                map: "m".into(),
                key: "k".into(),
                read: ReadMode::Linearizable,
            }
        ),
        class!(
            "audit read",
            "viewer",
            None,
            Op::Audit {
                after: 0,
                limit: 5,
                action: None,
            }
        ),
        class!(
            "versions",
            "viewer",
            MAIN,
            Op::Versions { app: "main".into() }
        ),
        class!("queue stats", "viewer", None, Op::QueueStats),
        class!(
            "kv write",
            "operator",
            MAIN,
            Op::KvSet {
                map: "m".into(),
                key: "k".into(),
                value: Value::Int(1),
            }
        ),
        class!(
            "queue write",
            "operator",
            MAIN,
            Op::QueuePut {
                queue: "q".into(),
                values: vec![Value::Int(1)],
            }
        ),
        class!(
            "ts write",
            "operator",
            MAIN,
            Op::TsAppend {
                series: "s".into(),
                points: vec![(None, None, Value::Int(1))],
                config: None,
            }
        ),
        class!(
            "restart",
            "operator",
            MAIN,
            Op::Restart {
                app: None,
                name: "no-such-daemon".into(),
            }
        ),
        class!(
            "deploy blobs",
            "deployer",
            None,
            Op::PutBlobs {
                blobs: vec![ByteBuf::from(b"x = 1\n".to_vec())],
            }
        ),
        class!(
            "activate",
            "deployer",
            MAIN,
            Op::Activate {
                app: "main".into(),
                version: Some(1),
            }
        ),
        class!(
            "eval",
            "developer",
            None,
            Op::Eval {
                session: None,
                code: "6 * 7".into(),
                module: None,
            }
        ),
        class!("session", "developer", None, Op::SessionOpen),
        class!(
            "completion",
            "developer",
            None,
            Op::Complete {
                session: None,
                code: "pri".into(),
                cursor: 3,
                module: None,
            }
        ),
        class!("users", "admin", None, Op::UserList),
        class!(
            "kv write in another realm",
            "operator",
            Some(SHOP),
            Op::KvSet {
                map: in_shop("m"),
                key: "k".into(),
                value: Value::Int(1),
            }
        ),
        class!(
            "queue read in another realm",
            "viewer",
            Some(SHOP),
            Op::QueuePeek {
                queue: in_shop("q"),
                n: 1,
            }
        ),
        class!(
            "secret names",
            "viewer",
            Some(SHOP),
            Op::Secrets { app: SHOP.into() }
        ),
        class!(
            "config read",
            "viewer",
            Some(SHOP),
            Op::Config { app: SHOP.into() }
        ),
        class!(
            "secret set",
            "deployer",
            Some(SHOP),
            Op::SecretSet {
                app: SHOP.into(),
                name: "API_KEY".into(),
                value: Some(SecretText("table-value".into())),
            }
        ),
        class!(
            "config set",
            "deployer",
            Some(SHOP),
            Op::ConfigSet {
                app: SHOP.into(),
                key: "mode".into(),
                value: Some("fast".into()),
            }
        ),
        class!(
            "secret value",
            "admin",
            Some(SHOP),
            Op::SecretGet {
                app: SHOP.into(),
                name: "API_KEY".into(),
            }
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_tries_every_operation_class() {
    let cluster = Cluster::start(3).await;
    cluster.deploy_app("app", "def f():\n    return 1\n", 1, "v1");
    let secrets: Vec<(&str, String)> = ROLES
        .iter()
        .map(|role| (*role, add_user(&cluster, &format!("u-{role}"), role, &[])))
        .collect();
    // Node 3: writes are forwarded to the leader (mostly node 1) and must not be re-refused.
    let addr = cluster.addr(3);
    let mut failures = Vec::new();
    for (role, secret) in &secrets {
        let client = connect(&addr, secret).await;
        for class in classes() {
            let outcome = (class.call)(&client).await;
            let allowed = rank(role) >= rank(class.needs);
            match (&outcome, allowed) {
                (Err(e), true)
                    if e.code == ErrorCode::Forbidden || e.code == ErrorCode::Unauthorized =>
                {
                    failures.push(format!("{role} / {}: refused: {}", class.name, e.message))
                }
                (Err(e), false) => {
                    let you = format!("you are u-{role} ({role})");
                    let needs = format!("needs the {} role", class.needs);
                    if e.code != ErrorCode::Forbidden
                        || !e.message.contains(&you)
                        || !e.message.contains(&needs)
                    {
                        failures.push(format!("{role} / {}: wrong refusal: {e:?}", class.name));
                    }
                }
                (Ok(_), false) => failures.push(format!("{role} / {}: allowed", class.name)),
                _ => {}
            }
        }
        // Requests nodes send each other need the cluster token, whatever the role.
        let e = call_outcome(&client, Op::AuditRecord(vec![]))
            .await
            .expect_err("internal op");
        assert_eq!(e.code, ErrorCode::Forbidden, "{role}: {e:?}");
        assert!(e.message.contains("needs the cluster token"), "{e:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A deployer scoped to app shop: its role within shop, a clear refusal on main's data
    // and code (kv names without an app are main's realm).
    let scoped = add_user(&cluster, "u-shop", "deployer", &["--app", SHOP]);
    let client = connect(&addr, &scoped).await;
    for class in classes() {
        let outcome = (class.call)(&client).await;
        let expected = if rank("deployer") < rank(class.needs) {
            Some(format!(
                "needs the {} role; you are u-shop (deployer for shop)",
                class.needs
            ))
        } else if class.app == MAIN {
            Some(format!(
                "on app \"main\" needs the {} role on that app; you are u-shop (deployer for shop)",
                class.needs
            ))
        } else {
            None
        };
        match (&outcome, expected) {
            (Err(e), Some(want)) if e.code == ErrorCode::Forbidden && e.message.contains(&want) => {
            }
            (Err(e), Some(want)) => failures.push(format!(
                "u-shop / {}: wrong refusal {e:?}, wanted {want:?}",
                class.name
            )),
            (Ok(_), Some(_)) => failures.push(format!("u-shop / {}: allowed", class.name)),
            (Err(e), None)
                if e.code == ErrorCode::Forbidden || e.code == ErrorCode::Unauthorized =>
            {
                failures.push(format!("u-shop / {}: refused: {}", class.name, e.message))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The bootstrap credential keeps doing everything.
    let admin = cluster.client(2).await;
    for class in classes() {
        let outcome = (class.call)(&admin).await;
        if let Err(e) = outcome {
            assert!(
                e.code != ErrorCode::Forbidden && e.code != ErrorCode::Unauthorized,
                "cluster token / {}: {e:?}",
                class.name
            );
        }
    }

    // Through the CLI, a refusal says the same; the audit log names the authenticated user.
    let viewer = &secrets[0].1;
    let deployer = &secrets[2].1;
    let err = fails(&cli_as(
        &cluster,
        viewer,
        &["kv", "set", "m", "k", "2", "--to", &addr],
    ));
    assert!(
        err.contains("needs the operator role; you are u-viewer (viewer)"),
        "{err}"
    );
    let dir = cluster.dir.path().join("app");
    ok(&cli_as(
        &cluster,
        deployer,
        &[
            "deploy",
            dir.to_str().expect("utf8"),
            "--to",
            &addr,
            "-m",
            "by the deployer",
        ],
    ));
    let audit = ok(&cluster.cli(&["audit", "--to", &cluster.addr(1)]));
    let line = audit
        .lines()
        .skip_while(|l| !l.contains("by the deployer"))
        .nth(1)
        .unwrap_or_else(|| panic!("no deploy entry: {audit}"));
    assert!(line.contains("by u-deployer: "), "{audit}");
    assert!(audit.contains("user-add"), "{audit}");
    let users = ok(&cluster.cli(&["user", "list", "--to", &cluster.addr(1)]));
    for role in ROLES {
        assert!(users.contains(&format!("u-{role}")), "{users}");
    }
    // Refusals are counted where they happen, and no secret shows anywhere.
    let metrics = crate::support::http::get(&cluster.http(3), "/metrics")
        .await
        .text();
    assert!(
        metrics.contains("code=\"Forbidden\"") && metrics.contains("op=\"user_list\""),
        "{metrics}"
    );
    let logs = cluster.logs();
    for (_, secret) in &secrets {
        let hidden = secret.rsplit('_').next().expect("secret half");
        for (what, text) in [
            ("users", &users),
            ("audit", &audit),
            ("metrics", &metrics),
            ("logs", &logs),
        ] {
            assert!(!text.contains(hidden), "a secret leaked into {what}");
        }
    }
}

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
        let mut child = Command::new(push_bin())
            .args(args)
            .current_dir(work.path())
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run push");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
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
