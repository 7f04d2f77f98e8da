//! Users and roles (issue 18) against a real 3-node cluster: one table where every role, and a
//! user scoped to one app, tries every class of operation (allowed, or refused naming the role
//! it needs, the app, and the user's), secrets and config and another app's realm included;
//! the audit log naming the authenticated user. Revocation, rotation, expiry and `push login`
//! are in `users.rs`.

use std::future::Future;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use push_protocol::{
    ByteBuf, Client, ClientError, ErrorCode, Op, Outcome, ReadMode, SecretText, Value,
};

use crate::support::cluster::{fails, ok, push_bin};
use crate::support::Cluster;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Creates user `name` with `role` (and `extra` flags) through the CLI; returns its secret.
pub(crate) fn add_user(cluster: &Cluster, name: &str, role: &str, extra: &[&str]) -> String {
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
pub(crate) fn cli_as(cluster: &Cluster, token: &str, args: &[&str]) -> std::process::Output {
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
pub(crate) async fn connect(addr: &str, token: &str) -> Client {
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
pub(crate) async fn call_outcome(client: &Client, op: Op) -> Outcome {
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
