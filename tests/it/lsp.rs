//! `push lsp` as editors use it: raw JSON-RPC over pipes (initialize, completion, hover, eval,
//! hot patches, diagnostics, deploy, rollback, interrupt), an eval sent before the connection
//! is up, a dead node (fast answers, then a reconnect) and completion latency, against real
//! clusters. Real editors' clients are in `lsp_editors.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::cluster::{free_port, ok};
use crate::support::http::get;
use crate::support::lsp::LspProc;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(20);

pub(crate) const APP_PY: &str = "import push\nfrom lib import words\n\n\n@push.route(\"GET\", \"/\")\ndef index():\n    return words.word()\n\n\ndef double(x):\n    return x * 2\n";
pub(crate) const BOOM_PY: &str =
    "\n\n@push.route(\"GET\", \"/boom/{n:int}\")\ndef boom(n):\n    scale = 0\n    return n // scale\n";
const WORDS_PY: &str = "def word():\n    return 'before'\n";

/// Writes the test app (entry `app`, module `lib.words`) under `dir`.
pub(crate) fn write_app(dir: &Path) -> PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("lib")).expect("app dir");
    std::fs::write(app.join("push.ron"), "(entry: \"app\")").expect("push.ron");
    std::fs::write(app.join("app.py"), APP_PY).expect("app.py");
    std::fs::write(app.join("lib/__init__.py"), "").expect("init");
    std::fs::write(app.join("lib/words.py"), WORDS_PY).expect("words");
    app
}

/// Deploys `app` through node 1 and waits until node `node` serves `body` at `/`.
pub(crate) async fn deploy_and_wait(cluster: &Cluster, app: &Path, node: u64, body: &str) {
    ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    let deadline = Instant::now() + WAIT;
    while get(&cluster.http(node), "/").await.text() != body {
        assert!(Instant::now() < deadline, "{body:?} never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn open(lsp: &mut LspProc, path: &Path, text: &str) {
    lsp.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri(path), "languageId": "python", "version": 1, "text": text}}),
    );
}

fn change(lsp: &mut LspProc, path: &Path, version: i32, text: &str) {
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri(path), "version": version}, "contentChanges": [{"text": text}]}),
    );
}

fn start_lsp(cluster: &Cluster, node: u64, root: &Path) -> LspProc {
    let mut lsp = LspProc::on_node(cluster, node);
    let init = lsp.initialize(root, json!({}));
    let commands = &init["capabilities"]["executeCommandProvider"]["commands"];
    assert!(commands.as_array().is_some_and(|c| c.len() == 11), "{init}");
    lsp.wait_notification("push/status", WAIT, |p| p["connected"] == true);
    lsp
}

fn labels(completion: &Value) -> Vec<String> {
    let items = completion
        .get("items")
        .unwrap_or(completion)
        .as_array()
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|i| i["label"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_json_rpc_eval_patch_diagnostics_deploy_rollback_interrupt() {
    let cluster = Cluster::start(3).await;
    let app = write_app(cluster.dir.path());
    deploy_and_wait(&cluster, &app, 2, "before").await;
    let mut lsp = start_lsp(&cluster, 2, &app);
    let status = lsp.command("push.status", json!({}), WAIT).expect("status");
    assert_eq!(
        (
            status["connected"].clone(),
            status["node"].clone(),
            status["version"].clone()
        ),
        (json!(true), json!(2), json!(1)),
        "{status}"
    );

    // Completion and hover from live objects.
    let scratch = app.join("scratch.py");
    let text = "import push\nq = push.kv('x').ca";
    open(&mut lsp, &scratch, text);
    let completion = lsp
        .request(
            "textDocument/completion",
            json!({"textDocument": {"uri": uri(&scratch)}, "position": {"line": 1, "character": 19}}),
            WAIT,
        )
        .expect("completion");
    assert!(
        labels(&completion).contains(&"cas".to_string()),
        "{completion}"
    );
    let edit = &completion.as_array().expect("items")[0]["textEdit"]["range"];
    assert_eq!(edit["start"], json!({"line": 1, "character": 17}), "{edit}");
    let hover = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": uri(&scratch)}, "position": {"line": 1, "character": 10}}),
            WAIT,
        )
        .expect("hover");
    let shown = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(shown.contains("push.kv"), "{hover}");

    // Eval: code, a top-level def by position, then a call to it.
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&scratch), "code": "6 * 7"}),
            WAIT,
        )
        .expect("eval");
    assert_eq!(
        (r["ok"].clone(), r["value"].clone()),
        (json!(true), json!("42")),
        "{r}"
    );
    assert_eq!(r["node"], json!(2));
    open(&mut lsp, &app.join("app.py"), APP_PY);
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&app.join("app.py")), "position": {"line": 10, "character": 4}}),
            WAIT,
        )
        .expect("eval def");
    assert_eq!(r["range"]["start"]["line"], json!(9), "{r}");
    assert_eq!(r["range"]["end"]["line"], json!(10), "{r}");
    // A file of the app is its module on the node: the def went there, and a call evaluated
    // in that file sees it; a file the node has not loaded keeps the scratch session.
    assert_eq!(r["module"], json!("app"), "{r}");
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&app.join("app.py")), "code": "print('hi'); double(21)"}),
            WAIT,
        )
        .expect("eval call");
    assert_eq!(
        (r["value"].clone(), r["stdout"].clone(), r["module"].clone()),
        (json!("42"), json!("hi\n"), json!("app")),
        "{r}"
    );
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&scratch), "code": "'double' in dir()"}),
            WAIT,
        )
        .expect("eval in scratch");
    assert_eq!(
        (r["value"].clone(), r["module"].clone()),
        (json!("False"), json!(null)),
        "{r}"
    );

    // A failed eval: error, traceback, and a diagnostic on the line it points to.
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&scratch), "range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}, "code": "x = 1\n1 / 0"}),
            WAIT,
        )
        .expect("eval error");
    assert_eq!(r["ok"], json!(false));
    assert_eq!(
        r["error"],
        json!("ZeroDivisionError: division by zero"),
        "{r}"
    );
    assert!(
        r["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("Traceback")),
        "{r}"
    );
    let diags = lsp.wait_notification("textDocument/publishDiagnostics", WAIT, |p| {
        p["uri"] == uri(&scratch) && p["diagnostics"].as_array().is_some_and(|d| !d.is_empty())
    });
    assert_eq!(
        diags["diagnostics"][0]["range"]["start"]["line"],
        json!(1),
        "{diags}"
    );

    // Syntax errors as you type.
    let broken = app.join("broken.py");
    open(&mut lsp, &broken, "x = 1\n");
    change(&mut lsp, &broken, 2, "x = 1\ndef f(:\n    pass\n");
    let diags = lsp.wait_notification("textDocument/publishDiagnostics", WAIT, |p| {
        p["uri"] == uri(&broken) && p["diagnostics"].as_array().is_some_and(|d| !d.is_empty())
    });
    let d = &diags["diagnostics"][0];
    assert_eq!(d["range"]["start"]["line"], json!(1), "{diags}");
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SyntaxError")),
        "{d}"
    );
    change(&mut lsp, &broken, 3, "x = 1\ndef f():\n    pass\n");
    lsp.wait_notification("textDocument/publishDiagnostics", WAIT, |p| {
        p["uri"] == uri(&broken)
            && p["version"] == 3
            && p["diagnostics"].as_array().is_some_and(|d| d.is_empty())
    });

    // Hot patches: a plain function in a submodule, then the route handler itself (patched in
    // place, so the route registered at import runs the new code).
    let words = app.join("lib/words.py");
    open(&mut lsp, &words, WORDS_PY);
    change(&mut lsp, &words, 2, "def word():\n    return 'patched'\n");
    let r = lsp
        .command(
            "push.evalInModule",
            json!({"uri": uri(&words), "position": {"line": 1, "character": 0}}),
            WAIT,
        )
        .expect("patch");
    assert_eq!(
        (r["ok"].clone(), r["module"].clone(), r["value"].clone()),
        (
            json!(true),
            json!("lib.words"),
            json!("patched word in lib.words")
        ),
        "{r}"
    );
    assert_eq!(get(&cluster.http(2), "/").await.text(), "patched");
    let new_app = APP_PY.replace("return words.word()", "return 'index ' + words.word()");
    change(&mut lsp, &app.join("app.py"), 2, &new_app);
    let r = lsp
        .command(
            "push.evalInModule",
            json!({"uri": uri(&app.join("app.py")), "position": {"line": 4, "character": 0}}),
            WAIT,
        )
        .expect("patch route");
    assert_eq!(r["value"], json!("patched index in app"), "{r}");
    assert_eq!(get(&cluster.http(2), "/").await.text(), "index patched");
    assert_eq!(
        get(&cluster.http(3), "/").await.text(),
        "before",
        "patches are per node"
    );
    // An error inside patched code points at the module's file and line.
    change(
        &mut lsp,
        &words,
        3,
        "def word():\n    return 'patched'\n\n\nboom = 1 / 0\n",
    );
    let r = lsp
        .command(
            "push.evalInModule",
            json!({"uri": uri(&words), "position": {"line": 4, "character": 0}}),
            WAIT,
        )
        .expect("patch error");
    assert_eq!(r["ok"], json!(false), "{r}");
    let diags = lsp.wait_notification("textDocument/publishDiagnostics", WAIT, |p| {
        p["uri"] == uri(&words) && p["diagnostics"].as_array().is_some_and(|d| !d.is_empty())
    });
    assert_eq!(
        diags["diagnostics"][0]["range"]["start"]["line"],
        json!(4),
        "{diags}"
    );

    // Code lenses over top-level defs.
    let lenses = lsp
        .request(
            "textDocument/codeLens",
            json!({"textDocument": {"uri": uri(&app.join("app.py"))}}),
            WAIT,
        )
        .expect("lenses");
    let lenses = lenses.as_array().expect("array");
    assert_eq!(lenses.len(), 4, "{lenses:?}");
    assert_eq!(lenses[0]["range"]["start"]["line"], json!(4));
    assert_eq!(lenses[1]["command"]["command"], json!("push.evalInModule"));

    // Deploy: a syntax error is refused with file and line; a good tree becomes v2.
    let bad = cluster.dir.path().join("bad");
    std::fs::create_dir_all(&bad).expect("bad dir");
    std::fs::write(bad.join("app.py"), "x = 1\ndef broken(:\n    pass\n").expect("bad");
    let err = lsp
        .command("push.deploy", json!({"root": bad.to_str()}), WAIT)
        .expect_err("a syntax error must fail the deploy");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("app.py") && message.contains("line 2"),
        "{err}"
    );
    std::fs::write(app.join("lib/words.py"), "def word():\n    return 'v2'\n").expect("v2");
    let r = lsp.command("push.deploy", json!({}), WAIT).expect("deploy");
    assert_eq!(
        (r["ok"].clone(), r["version"].clone()),
        (json!(true), json!(2)),
        "{r}"
    );
    lsp.wait_notification("push/status", WAIT, |p| p["version"] == 2);
    let r = lsp
        .command("push.rollback", json!({}), WAIT)
        .expect("rollback");
    assert_eq!(r["version"], json!(1), "{r}");
    lsp.wait_notification("push/status", WAIT, |p| p["version"] == 1);

    // Interrupt a runaway eval.
    let running = lsp.send_request(
        "workspace/executeCommand",
        json!({"command": "push.eval", "arguments": [{"uri": uri(&scratch), "code": "while True: pass"}]}),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let r = lsp
            .command("push.interrupt", json!({}), WAIT)
            .expect("interrupt");
        if r["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the loop never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = lsp.response(running, WAIT).expect("interrupted eval");
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("KeyboardInterrupt")),
        "{r}"
    );
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&scratch), "code": "'alive'"}),
            WAIT,
        )
        .expect("after interrupt");
    assert_eq!(r["value"], json!("'alive'"));
    let r = lsp.request("shutdown", Value::Null, WAIT);
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_sent_right_after_initialize_waits_for_the_connection_under_way() {
    // An editor may run a command as soon as `initialize` answers, while the server is still
    // connecting: the command waits for that attempt instead of failing with "not connected".
    let cluster = Cluster::start(1).await;
    let dir = tempfile::tempdir().expect("temp");
    let mut lsp = LspProc::on_node(&cluster, 1);
    lsp.initialize(dir.path(), json!({}));
    let file = dir.path().join("x.py");
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&file), "code": "6 * 7"}),
            WAIT,
        )
        .expect("eval right after initialize");
    assert_eq!(
        (r["ok"].clone(), r["value"].clone()),
        (json!(true), json!("42")),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_node_gets_fast_answers_then_the_server_reconnects() {
    // No node at all: initialize and every request answer at once.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("temp");
    let mut lsp = LspProc::start(&["--to", &nowhere, "--token", "t"], &[]);
    let started = Instant::now();
    lsp.initialize(dir.path(), json!({}));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    lsp.wait_notification("push/status", WAIT, |p| p["connected"] == false);
    let file = dir.path().join("x.py");
    open(&mut lsp, &file, "import os\nos.pa");
    let started = Instant::now();
    let completion = lsp
        .request(
            "textDocument/completion",
            json!({"textDocument": {"uri": uri(&file)}, "position": {"line": 1, "character": 5}}),
            WAIT,
        )
        .expect("completion");
    assert!(labels(&completion).is_empty());
    let hover = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": uri(&file)}, "position": {"line": 0, "character": 8}}),
            WAIT,
        )
        .expect("hover");
    assert_eq!(hover, Value::Null);
    let err = lsp
        .command("push.eval", json!({"uri": uri(&file), "code": "1"}), WAIT)
        .expect_err("no node");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("not connected")),
        "{err}"
    );
    // The feature: with no node, requests are answered at once instead of each waiting for a
    // connection. 3 s is headroom for a loaded machine, still far below the WAIT a call that
    // waited for the node would run into.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answers on a dead node took {:?}",
        started.elapsed()
    );
    lsp.wait_notification("window/showMessage", WAIT, |p| {
        p["message"]
            .as_str()
            .is_some_and(|m| m.contains("not connected"))
    });
    drop(lsp);

    // A node that dies and comes back: the server notices both and evals work again.
    let mut cluster = Cluster::start(1).await;
    let mut lsp = start_lsp(&cluster, 1, dir.path());
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&file), "code": "n = 5"}),
            WAIT,
        )
        .expect("eval");
    assert_eq!(r["ok"], json!(true), "{r}");
    cluster.kill(1);
    lsp.wait_notification("push/status", WAIT, |p| p["connected"] == false);
    let started = Instant::now();
    let err = lsp
        .command("push.eval", json!({"uri": uri(&file), "code": "1"}), WAIT)
        .expect_err("node is down");
    // Answered at once (not after a connect timeout); 3 s is headroom for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    cluster.restart(1);
    cluster.wait_leader(WAIT).await;
    let reconnected = Instant::now();
    let deadline = Instant::now() + WAIT;
    loop {
        match lsp.command(
            "push.eval",
            json!({"uri": uri(&file), "code": "2 + 2"}),
            WAIT,
        ) {
            Ok(r) if r["value"] == "4" => break,
            other => {
                assert!(Instant::now() < deadline, "never reconnected: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        reconnected.elapsed() < Duration::from_secs(5),
        "reconnect took {:?}",
        reconnected.elapsed()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_latency_through_push_lsp() {
    let cluster = Cluster::start(1).await;
    let dir = tempfile::tempdir().expect("temp");
    let mut lsp = start_lsp(&cluster, 1, dir.path());
    let file = dir.path().join("bench.py");
    let prefix = "import push\nvalues = push.kv('bench')\n";
    open(&mut lsp, &file, &format!("{prefix}values.ge"));
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": uri(&file), "code": prefix}),
            WAIT,
        )
        .expect("eval");
    assert_eq!(r["ok"], json!(true), "{r}");
    let request =
        json!({"textDocument": {"uri": uri(&file)}, "position": {"line": 2, "character": 9}});
    // Warm up (jedi's first import, the session).
    for _ in 0..5 {
        lsp.request("textDocument/completion", request.clone(), WAIT)
            .expect("completion");
    }
    let n = 200;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let r = lsp
            .request("textDocument/completion", request.clone(), WAIT)
            .expect("completion");
        times.push(started.elapsed());
        assert!(labels(&r).contains(&"get".to_string()), "{r}");
    }
    times.sort();
    let (p50, p99) = (percentile(&times, 0.50), percentile(&times, 0.99));
    println!(
        "completion through push lsp: n={n} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        times[n - 1].as_secs_f64() * 1e3
    );
    // The 50 ms target is a figure to measure (printed above), not an assertion. What the
    // test holds is that completion never stalls on a live object (jedi can take seconds on a
    // big one; the node answers within its completion deadline with partial results): 2 s
    // is far above that deadline and leaves room for a loaded 2-core machine.
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}");
}
