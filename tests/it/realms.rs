//! Realms, secrets and config (issue 18) against a real 3-node cluster: two apps keep their
//! kv maps, queues and timeseries apart and reach each other's only by naming the app (and
//! with a role on it; a user scoped to one app does not even see the names of another's
//! queues and series); a planted secret reaches the code that reads it and appears nowhere
//! else — not in any node's log, the audit log, `/metrics`, `push status`, `push logs` or a
//! listing — after every command path that touches it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use push_protocol::{Client, Op, Reply, Value};

use crate::support::cluster::{fails, ok, push_bin, with_stdin};
use crate::support::http;
use crate::support::tmux::Tmux;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(20);

/// Runs the CLI with the cluster token and `stdin` piped in.
fn cli_stdin(cluster: &Cluster, args: &[&str], stdin: &str) -> std::process::Output {
    with_stdin(
        Command::new(push_bin())
            .args(args)
            .arg("--token-file")
            .arg(&cluster.token_file)
            .current_dir(cluster.dir.path())
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN"),
        stdin,
    )
}

/// Deploys `source` as the one module of app `app` through node 1.
fn deploy(cluster: &Cluster, app: &str, source: &str) {
    let dir = cluster.dir.path().join(format!("app-{app}"));
    std::fs::create_dir_all(&dir).expect("app dir");
    std::fs::write(dir.join("app.py"), source).expect("write app");
    ok(&cluster.cli(&[
        "deploy",
        dir.to_str().expect("utf8"),
        "--app",
        app,
        "--to",
        &cluster.addr(1),
        "-m",
        "realms",
    ]));
}

/// GETs `path` of `app` on node `id` until it answers 200 (the version may still be loading).
async fn get_app(cluster: &Cluster, id: u64, app: &str, path: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer =
            http::request(&cluster.http(id), "GET", path, &[("x-push-app", app)], b"").await;
        match answer {
            Ok(r) if r.status == 200 => return r.text(),
            other => assert!(
                Instant::now() < deadline,
                "GET {path} of {app} on node {id}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SHOP: &str = r#"
import push

orders = push.kv("orders")
jobs = push.queue("jobs")

@push.route("GET", "/order")
def order():
    orders["o1"] = "from-shop"
    jobs.put("shop-job")
    push.timeseries("sales").append(5)
    return {"app": push.app(), "repr": repr(orders)}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_keep_their_data_apart() {
    let cluster = Cluster::start(3).await;
    let to = cluster.addr(2);
    deploy(&cluster, "shop", SHOP);
    // Code running in app shop writes shop's realm by default.
    let answer = get_app(&cluster, 1, "shop", "/order").await;
    assert!(answer.contains("\"app\": \"shop\""), "{answer}");
    assert!(answer.contains("app='shop'"), "{answer}");

    // The CLI's --app selects the realm; without it, main's (where it always was).
    let out = ok(&cluster.cli(&["kv", "get", "orders", "o1", "--app", "shop", "--to", &to]));
    assert_eq!(out.trim(), "'from-shop'");
    let err = fails(&cluster.cli(&["kv", "get", "orders", "o1", "--to", &to]));
    assert!(err.contains("no such key"), "{err}");
    ok(&cluster.cli(&["kv", "set", "orders", "o1", "from-main", "--to", &to]));
    let out = ok(&cluster.cli(&["kv", "get", "orders", "o1", "--app", "shop", "--to", &to]));
    assert_eq!(out.trim(), "'from-shop'", "main's write left shop's alone");
    let queues = ok(&cluster.cli(&["queues", "--app", "shop", "--to", &to]));
    assert!(queues.contains("jobs"), "{queues}");
    let queues = ok(&cluster.cli(&["queues", "--to", &to]));
    assert!(
        !queues.contains("jobs"),
        "main has no queue jobs:\n{queues}"
    );
    let peek = ok(&cluster.cli(&["peek", "jobs", "--app", "shop", "--to", &to]));
    assert!(peek.contains("shop-job"), "{peek}");
    let series = ok(&cluster.cli(&["ts", "--app", "shop", "--to", &to]));
    assert!(series.contains("sales"), "{series}");
    let series = ok(&cluster.cli(&["ts", "--to", &to]));
    assert!(!series.contains("sales"), "{series}");

    // Python outside the app (an eval runs as main) reaches shop's data only by naming it.
    let out = ok(&cluster.cli(&[
        "eval",
        &to,
        "import push; (push.kv('orders')['o1'], push.kv('orders', app='shop')['o1'], push.app())",
    ]));
    assert!(out.contains("('from-main', 'from-shop', 'main')"), "{out}");
    // No name reaches into another realm by spelling the separator.
    let sneaky = cluster.cli(&["eval", &to, "import push; push.kv('shop\\x1forders')"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&sneaky.stdout),
        fails(&sneaky)
    );
    assert!(said.contains("control character"), "{said}");

    // A user scoped to shop reads shop's realm and gets a clear refusal for main's.
    let out = ok(&cluster.cli(&[
        "user", "add", "shopper", "--role", "viewer", "--app", "shop", "--to", &to,
    ]));
    let secret = out
        .lines()
        .find(|l| l.starts_with("push_"))
        .expect("a secret")
        .to_string();
    let as_shopper = |args: &[&str]| {
        Command::new(push_bin())
            .args(args)
            .args(["--token", &secret, "--to", &to])
            .current_dir(cluster.dir.path())
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run push")
    };
    let out = ok(&as_shopper(&["kv", "get", "orders", "o1", "--app", "shop"]));
    assert_eq!(out.trim(), "'from-shop'");
    let err = fails(&as_shopper(&["kv", "get", "orders", "o1"]));
    assert!(
        err.contains("`kv_get` on app \"main\" needs the viewer role on that app; you are shopper (viewer for shop)"),
        "{err}"
    );
    let err = fails(&as_shopper(&[
        "kv", "set", "orders", "o2", "x", "--app", "shop",
    ]));
    assert!(err.contains("needs the operator role"), "{err}");

    // The listings of every queue and series show a scoped user only its apps' ones: main's
    // queue and series keep their names and sizes to themselves.
    let admin = cluster.client(2).await;
    let main_queue = Op::QueuePut {
        queue: "payroll".into(),
        values: vec![Value::Int(1)],
    };
    admin.call(main_queue).await.expect("main's queue");
    let main_series = Op::TsAppend {
        series: "salaries".into(),
        points: vec![(None, None, Value::Int(1))],
        config: None,
    };
    admin.call(main_series).await.expect("main's series");
    let shopper = Client::connect(&to, &secret)
        .await
        .expect("connect as shopper");
    let names = |reply: Reply| -> Vec<String> {
        match reply {
            Reply::QueueStats(q) => q.into_iter().map(|q| q.name).collect(),
            Reply::TsStats(s) => s.into_iter().map(|s| s.name).collect(),
            other => panic!("not a listing: {other:?}"),
        }
    };
    let all_queues = names(admin.call(Op::QueueStats).await.expect("queues"));
    assert!(
        all_queues.contains(&"payroll".to_string()),
        "{all_queues:?}"
    );
    for op in [Op::QueueStats, Op::TsStats] {
        let seen = names(shopper.call(op).await.expect("listing as shopper"));
        assert!(!seen.is_empty(), "shop's own are listed");
        assert!(
            seen.iter().all(|n| n.starts_with("shop\u{1f}")),
            "a user of shop sees another app's: {seen:?}"
        );
    }

    // The REPL's meta commands follow `:app`.
    let term = Tmux::start(&format!(
        "PUSH_HISTORY={} {} repl {} --token-file {}",
        cluster.dir.path().join("history").display(),
        push_bin(),
        cluster.addr(1),
        cluster.token_file.display(),
    ));
    term.wait_for(">>>", WAIT);
    term.line(":kv orders");
    term.wait_for("from-main", WAIT);
    term.line(":app shop");
    term.wait_for("working on app shop", WAIT);
    term.line(":kv orders");
    term.wait_for("from-shop", WAIT);
    term.line(":queues");
    term.wait_for("jobs", WAIT);
    term.line(":versions");
    term.wait_for("realms", WAIT);
}

/// Every node's whole log.
fn all_logs(cluster: &Cluster) -> String {
    (1..=3)
        .map(|id| {
            std::fs::read_to_string(cluster.data_dir(id).join("node.log")).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const READS_SECRETS: &str = r#"
import logging
import push

@push.route("GET", "/check")
def check():
    key = push.secret("API_KEY")
    logging.getLogger("shop").info("calling the payment API with a key of %d chars", len(key))
    return {"len": len(key), "mode": push.config("mode", "unset")}

@push.route("GET", "/leak")
def leak():
    key = push.secret("API_KEY")
    logging.getLogger("shop").error("careless: the key is %s", key)
    raise RuntimeError(f"the payment API refused key {key}")

@push.daemon
def careless(ctx):
    while not ctx.stopping.is_set():
        try:
            print("daemon sees key", push.secret("API_KEY"))
        except KeyError:
            print("daemon has no key yet")
        ctx.sleep(0.2)

@push.route("GET", "/missing")
def missing():
    try:
        push.secret("NOPE")
    except KeyError as e:
        return {"error": str(e)}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_secret_shows_nowhere_but_in_the_code_that_reads_it() {
    let cluster = Cluster::start(3).await;
    let planted = format!(
        "sk-planted-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let to = cluster.addr(3);
    deploy(&cluster, "shop", READS_SECRETS);

    // Set through a follower, value on stdin; listed by name and who set it, never by value.
    let out = ok(&cli_stdin(
        &cluster,
        &["secret", "set", "shop", "API_KEY", "--to", &to],
        &format!("{planted}\n"),
    ));
    assert!(out.contains("secret API_KEY of shop set"), "{out}");
    let list = ok(&cluster.cli(&["secret", "list", "shop", "--to", &to]));
    assert!(
        list.contains("API_KEY") && list.contains("cluster-token"),
        "{list}"
    );
    // Bad input: an empty value is refused and changes nothing.
    let err = fails(&cli_stdin(
        &cluster,
        &["secret", "set", "shop", "API_KEY", "--to", &to],
        "",
    ));
    assert!(err.contains("no value on stdin"), "{err}");

    // Running code reads it, and config, without a deploy; the next read sees a change.
    let answer = get_app(&cluster, 2, "shop", "/check").await;
    assert!(
        answer.contains(&format!("\"len\": {}", planted.len())),
        "{answer}"
    );
    assert!(answer.contains("\"mode\": \"unset\""), "{answer}");
    ok(&cluster.cli(&["config", "set", "shop", "mode", "fast", "--to", &to]));
    let answer = get_app(&cluster, 2, "shop", "/check").await;
    assert!(answer.contains("\"mode\": \"fast\""), "{answer}");
    let out = ok(&cluster.cli(&["config", "get", "shop", "mode", "--to", &to]));
    assert_eq!(out.trim(), "fast");
    let out = ok(&cluster.cli(&["config", "list", "shop", "--to", &to]));
    assert!(out.contains("mode") && out.contains("fast"), "{out}");
    ok(&cluster.cli(&["config", "rm", "shop", "mode", "--to", &to]));
    let err = fails(&cluster.cli(&["config", "get", "shop", "mode", "--to", &to]));
    assert!(err.contains("no config entry \"mode\""), "{err}");
    let err = fails(&cluster.cli(&["config", "rm", "shop", "mode", "--to", &to]));
    assert!(err.contains("nothing removed"), "{err}");
    // Careless code logs it and raises with it: logs and tracebacks show "[secret]".
    let leak = http::request(
        &cluster.http(2),
        "GET",
        "/leak",
        &[("x-push-app", "shop")],
        b"",
    )
    .await
    .expect("answered");
    assert_eq!(leak.status, 500);
    assert!(!leak.text().contains(&planted), "{}", leak.text());
    let deadline = Instant::now() + WAIT;
    while !all_logs(&cluster).contains("the payment API refused key [secret]") {
        assert!(
            Instant::now() < deadline,
            "no redacted traceback:\n{}",
            all_logs(&cluster)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = Vec::new();
    // A daemon printing it: `push tail` and the node's log show "[secret]".
    let deadline = Instant::now() + WAIT;
    loop {
        let tail = ok(&cluster.cli(&["tail", "careless", "--app", "shop", "--to", &to]));
        if tail.contains("daemon sees key [secret]") {
            seen.push(("push tail".into(), tail));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no redacted daemon line:\n{tail}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = get_app(&cluster, 1, "shop", "/missing").await;
    assert!(answer.contains("push secret set shop NOPE"), "{answer}");

    // An admin reads the value back; other paths that touch it: eval, status, audit, logs.
    let out = ok(&cluster.cli(&["secret", "get", "shop", "API_KEY", "--to", &to]));
    assert_eq!(out.trim(), planted);
    let out = ok(&cluster.cli(&["eval", &to, "import push; push.kv('x')['y'] = 1"]));
    assert!(out.is_empty() || !out.contains(&planted), "{out}");
    for id in 1..=3 {
        seen.push((
            format!("push status of node {id}"),
            ok(&cluster.cli(&["status", &cluster.addr(id)])),
        ));
        seen.push((
            format!("/metrics of node {id}"),
            http::get(&cluster.http(id), "/metrics").await.text(),
        ));
    }
    let audit = ok(&cluster.cli(&["audit", "--to", &to]));
    assert!(
        audit.contains("secret-set") && audit.contains("API_KEY"),
        "{audit}"
    );
    assert!(
        audit.contains("config-set") && audit.contains("config-rm"),
        "{audit}"
    );
    seen.push(("push audit".into(), audit));
    seen.push(("push logs".into(), ok(&cluster.cli(&["logs", "--to", &to]))));
    seen.push(("push secret list".into(), list));
    ok(&cluster.cli(&["secret", "rm", "shop", "API_KEY", "--to", &to]));
    let err = fails(&cluster.cli(&["secret", "get", "shop", "API_KEY", "--to", &to]));
    assert!(err.contains("no secret \"API_KEY\""), "{err}");
    assert!(!err.contains(&planted));
    seen.push(("every node's log".into(), all_logs(&cluster)));
    for (what, text) in &seen {
        assert!(
            !text.contains(&planted),
            "the secret leaked into {what}:\n{text}"
        );
    }
}
