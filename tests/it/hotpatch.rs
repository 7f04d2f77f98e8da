//! Hot patches reach running code: README's own example (`app.py` does `from greetings.text
//! import greeting` and routes `/` to it) patched through `push eval --module` and through the
//! REPL's `:in`, and a daemon's target function, all without a deploy.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::repl::run_script;
use crate::support::cluster::ok;
use crate::support::http::get;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(15);

/// Polls `GET /` on node `id` until the body is exactly `want`.
async fn wait_index(cluster: &Cluster, id: u64, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = get(&cluster.http(id), "/").await;
        if r.status == 200 && r.text() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never served {want:?}; last: {} {:?}\n{}",
            r.status,
            r.text(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hello_web() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/hello-web")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redefining_an_imported_function_changes_what_the_route_serves_without_a_deploy() {
    let cluster = Cluster::start(1).await;
    ok(&cluster.cli(&["deploy", &hello_web(), "--to", &cluster.addr(1)]));
    wait_index(&cluster, 1, "hello from v1 on node 1\n").await;

    // `push eval --module`: app.py holds `greeting` through `from greetings.text import`.
    let out = cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "--module",
        "greetings.text",
        "def greeting():\n    \"\"\"Patched.\"\"\"\n    return 'patched by eval'\n\ndef farewell():\n    return 'bye'\n",
    ]);
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("patched greeting in greetings.text")
            && said.contains("defined farewell in greetings.text (new)"),
        "the reply says what was patched in place and what was defined anew: {said}"
    );
    assert_eq!(
        get(&cluster.http(1), "/").await.text(),
        "patched by eval on node 1\n",
        "the route must run the patched function at once"
    );
    // Same identity: the name app.py imported is the module's function, docstring and all.
    let out = ok(&cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "--module",
        "app",
        "(greeting is __import__('greetings.text').text.greeting, greeting.__doc__)",
    ]));
    assert_eq!(out.trim(), "(True, 'Patched.')");

    // The REPL's `:in` takes the same path.
    let (fine, out, err) = run_script(
        &cluster,
        ":in greetings.text\ndef greeting(name='repl'):\n    return 'patched by the ' + name\n",
    );
    assert!(fine, "{out}\n{err}");
    assert!(
        err.contains("patched greeting in greetings.text"),
        "{out}\n{err}"
    );
    assert_eq!(
        get(&cluster.http(1), "/").await.text(),
        "patched by the repl on node 1\n"
    );
}

const DAEMON_APP: &str = r#"import push

beats = push.kv("beats")


@push.daemon
def beat(ctx):
    while ctx.sleep(0.2):
        beats.set("said", "v1")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redefining_a_daemons_target_function_takes_effect_without_a_deploy() {
    let cluster = Cluster::start(1).await;
    cluster.deploy_app("beater", DAEMON_APP, 1, "v1");
    // Absent until the daemon's first beat.
    let said = |cluster: &Cluster| {
        let out = cluster.cli(&["kv", "get", "beats", "said", "--to", &cluster.addr(1)]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let deadline = Instant::now() + WAIT;
    while !said(&cluster).contains("v1") {
        assert!(
            Instant::now() < deadline,
            "the daemon never ran\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The running loop keeps its frame; `push restart` starts the registered function
    // again -- the same object, now with the new code.
    let out = cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "--module",
        "app",
        "def beat(ctx):\n    while ctx.sleep(0.2):\n        beats.set('said', 'patched')\n",
    ]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("patched beat in app"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&cluster.cli(&["restart", "beat", "--to", &cluster.addr(1)]));
    let deadline = Instant::now() + WAIT;
    while !said(&cluster).contains("patched") {
        assert!(
            Instant::now() < deadline,
            "the daemon never ran the patched code\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
