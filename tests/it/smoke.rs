//! The smoke tests: the few black-box tests `scripts/test` also runs against a `push` binary
//! built for every other supported CPython on the machine (through `PUSH_TEST_BIN`). A cluster
//! forms, takes a deploy, serves a handler, evaluates, interrupts and runs a daemon; the node
//! embeds the interpreter it was built against and says which (status, REPL banner, deploy
//! gate); bytecode from another Python version is refused instead of run.
//!
//! Nothing here may depend on the Python version except through what the node reports.

use std::process::Command;
use std::time::{Duration, Instant};

use push_protocol::{Op, ReadMode, Reply, Stream, Value};

use crate::support::cluster::{fails, get, ok, push_bin};
use crate::support::http::get as http_get;
use crate::support::tmux::Tmux;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(20);

/// The interpreter the binary under test was built against, from `push --version`.
fn build_python() -> String {
    let out = Command::new(push_bin())
        .arg("--version")
        .output()
        .expect("push --version");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split("built with ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("push --version names no build interpreter: {text:?}"))
        .to_string()
}

/// Runs `code` with `python`; its stdout, trimmed.
fn run_python(python: &str, code: &str) -> String {
    let out = Command::new(python)
        .args(["-c", code])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the build interpreter {python}: {e}"));
    assert!(out.status.success(), "{python}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `check` every 100 ms until it returns Some, or panics naming `what`, with the logs.
async fn wait_until<T, F, Fut>(cluster: &Cluster, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const APP: &str = r#"import sys, push

beats = push.kv("smoke")

@push.route("GET", "/")
def index(request):
    return f"smoke v{push.version} on node {push.node.id}"

@push.daemon
def beat(ctx):
    n = 0
    while ctx.sleep(0.1):
        n += 1
        beats.set("beat", n)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_forms_deploys_serves_evaluates_interrupts_and_runs_a_daemon() {
    let cluster = Cluster::start(3).await;
    cluster.wait_voters(3, WAIT).await;
    cluster.deploy_app("app", APP, 2, "smoke");
    for id in 1..=3 {
        let want = format!("smoke v1 on node {id}");
        wait_until(&cluster, &format!("node {id} to serve v1"), || async {
            http_get(&cluster.http(id), "/")
                .await
                .text()
                .contains(&want)
                .then_some(())
        })
        .await;
    }
    let out = ok(&cluster.cli(&["eval", &cluster.addr(3), "sum(range(10)) * push.node.id"]));
    assert_eq!(out.trim(), "135", "{out}");

    // A daemon runs somewhere and writes through Raft.
    let c = cluster.client(1).await;
    wait_until(&cluster, "the daemon to beat twice", || async {
        match get(&c, "smoke", "beat", ReadMode::Linearizable).await {
            Some(Value::Int(n)) if n >= 2 => Some(()),
            _ => None,
        }
    })
    .await;

    // An endless eval is interrupted once it has started.
    let session = match c.call(Op::SessionOpen).await {
        Ok(Reply::Session { id }) => id,
        other => panic!("session: {other:?}"),
    };
    let mut replies = c
        .call_stream(Op::Eval {
            session: Some(session),
            code: "print('spinning', flush=True)\nwhile True:\n    pass".into(),
            module: None,
        })
        .await
        .expect("eval");
    match replies.recv().await {
        Some(Ok(Reply::Output {
            stream: Stream::Stdout,
            text,
        })) => assert!(text.contains("spinning"), "{text}"),
        other => panic!("expected the loop's first output, got {other:?}"),
    }
    let interrupter = cluster.client(1).await;
    match interrupter.call(Op::Interrupt { session }).await {
        Ok(Reply::Interrupted { running: true }) => {}
        other => panic!("interrupt: {other:?}"),
    }
    let result = tokio::time::timeout(WAIT, async {
        while let Some(reply) = replies.recv().await {
            if let Ok(Reply::Evaluated(r)) = reply {
                return Some(r);
            }
        }
        None
    })
    .await
    .expect("the interrupted eval ends")
    .expect("a result");
    assert_eq!(
        result.error.expect("interrupted").type_name,
        "KeyboardInterrupt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_embeds_its_build_interpreter_and_names_it() {
    let python = build_python();
    let version = run_python(&python, "import platform; print(platform.python_version())");
    let identity = run_python(
        &python,
        "import sys, json; print(json.dumps({'version': sys.version, 'prefix': sys.prefix}))",
    );
    let cluster = Cluster::start(1).await;
    cluster.wait_leader(WAIT).await;

    // The running interpreter is the build interpreter (not another copy of its libpython).
    cluster.deploy_app(
        "info",
        "import sys, push\n\n@push.route('GET', '/py')\ndef py(request):\n    return {'version': sys.version, 'prefix': sys.prefix}\n",
        1,
        "info",
    );
    let body = wait_until(&cluster, "the /py handler", || async {
        let r = http_get(&cluster.http(1), "/py").await;
        (r.status == 200).then(|| r.text())
    })
    .await;
    assert_eq!(
        body, identity,
        "the node embeds another Python than its build interpreter {python}"
    );

    // push status (protocol, text, JSON) names it.
    let status = cluster.status(1).await.expect("status");
    assert_eq!(status.python_version, version);
    let text = ok(&cluster.cli(&["status", &cluster.addr(1)]));
    assert!(
        text.contains("PYTHON") && text.contains(&format!(" {version} ")),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&cluster.cli(&["status", &cluster.addr(1), "--json"])))
            .expect("status json");
    assert_eq!(json["nodes"][0]["python"], version.as_str(), "{json}");

    // The deploy gate says which Python refused a version.
    let dir = cluster.dir.path().join("broken");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("app.py"), "def broken(:\n    pass\n").expect("write");
    let err = fails(&cluster.cli(&[
        "deploy",
        dir.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    assert!(
        err.contains("HEAD unchanged") && err.contains(&format!("on Python {version}")),
        "{err}"
    );
    // Syntax new in 3.12 (PEP 695) passes the gate exactly where the node's Python has it.
    std::fs::write(dir.join("app.py"), "type Pair = tuple[int, int]\n").expect("write");
    let deploy = cluster.cli(&[
        "deploy",
        dir.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]);
    let minor: u32 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("minor version");
    if minor >= 12 {
        ok(&deploy);
    } else {
        let err = fails(&deploy);
        assert!(
            err.contains(&format!("syntax error on Python {version}")),
            "{err}"
        );
    }

    // Bytecode shipped by another Python version (push.run of a function) is refused with
    // both versions named; it is never executed.
    let c = cluster.client(1).await;
    let (_, _, r) = crate::support::eval::eval_streams(
        &c,
        None,
        "import marshal, _push_native\n\
         blob = b'\\0\\0\\0\\0' + b'3.99.0\\0' + marshal.dumps((lambda: 1).__code__)\n\
         _push_native.run(('code', blob, 'f', None), [], ('any', None), 10.0)",
    )
    .await;
    let value = r.value.unwrap_or_else(|| panic!("{:?}", r.error));
    assert!(
        value.contains("False")
            && value.contains("Python 3.99.0")
            && value.contains(&format!("Python {version}")),
        "{value}"
    );

    // The REPL's banner names it too.
    let term = Tmux::start(&format!(
        "PUSH_HISTORY={} {} repl {} --token-file {}",
        cluster.dir.path().join("history").display(),
        push_bin(),
        cluster.addr(1),
        cluster.token_file.display()
    ));
    term.wait_for(&format!("Python {version}."), WAIT);
    term.key("C-d");
}
