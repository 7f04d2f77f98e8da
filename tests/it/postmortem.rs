//! Post-mortem of live failures and call tracing, black-box: a route that raises on node 2 is
//! listed by `push errors` (asked through node 1) with node 2's id; the REPL's `:pm` shows
//! its frames, `:frame` its locals, input evaluates in the frame, `:source` shows the
//! function; a hot-patch then `:replay` passes. Unknown, malformed and stale ids and a user
//! of another app are refused with a message saying why.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::repl::run_script;
use crate::support::cluster::{ok, push_bin};
use crate::support::http::get;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(30);

const APP: &str = r#"import push

def square(n):
    scale = 0
    return n * n // scale

@push.route("GET", "/sq/{n:int}")
def sq(n):
    factor = 3
    return str(square(n) * factor)

@push.route("GET", "/calc/{n:int}")
def calc(n):
    return str(helper(n))

def helper(n):
    return n + 1

@push.daemon(on=1)
def crasher(ctx):
    ticket = "d-42"
    raise RuntimeError("daemon broke on " + ticket)
"#;

/// `push errors --json` rows through node `via`, waiting (bounded) until `want` holds.
fn errors_until(cluster: &Cluster, via: u64, want: impl Fn(&[Json]) -> bool) -> Vec<Json> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = ok(&cluster.cli(&["errors", &cluster.addr(via), "--json"]));
        let rows: Vec<Json> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if want(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "push errors never showed what was expected; last: {out}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_route_is_listed_opened_patched_and_replayed() {
    let cluster = Cluster::start_with(2, &["--py-workers", "1"]).await;
    cluster.deploy_app("pm", APP, 1, "pm");
    let deadline = Instant::now() + WAIT;
    loop {
        let r = get(&cluster.http(2), "/sq/12").await;
        if r.status == 500 {
            break;
        }
        assert!(Instant::now() < deadline, "never a 500: {}", r.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Listed through node 1, kept on node 2.
    let rows = errors_until(&cluster, 1, |rows| {
        rows.iter().any(|r| r["origin"] == "route GET /sq/12")
    });
    let row = rows
        .iter()
        .find(|r| r["origin"] == "route GET /sq/12")
        .expect("the route's failure");
    assert_eq!(row["node"], 2, "kept on the node that served it: {row}");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .starts_with("ZeroDivisionError"),
        "{row}"
    );
    let id = row["id"].as_str().expect("an id").to_string();
    assert!(id.starts_with("2.1."), "node.worker.start.seq: {id}");
    let table = ok(&cluster.cli(&["errors", &cluster.addr(1)]));
    assert!(
        table.contains(&id) && table.contains("route GET /sq/12"),
        "{table}"
    );

    // Opened from a REPL on node 1: frames, locals, an eval in the frame, the source.
    let script = format!(
        ":pm {id}\n:frame 0\nn * 10 + scale\n:frame 1\nfactor\n:source\n:replay\n:q\n1 + 1\n"
    );
    let (_, out, err) = run_script(&cluster, &script);
    assert!(
        out.contains("frames:") && out.contains("in square") && out.contains("in sq"),
        "numbered frames: {out}\n{err}"
    );
    assert!(
        out.contains("GET /sq/12"),
        "the recorded request: {out}\n{err}"
    );
    assert!(
        out.contains("n = 12") && out.contains("scale = 0"),
        "frame 0's locals: {out}\n{err}"
    );
    assert!(
        out.contains("\n120\n"),
        "an eval in frame 0 sees n: {out}\n{err}"
    );
    assert!(
        out.contains("factor = 3") && out.contains("\n3\n"),
        "frame 1: {out}\n{err}"
    );
    assert!(
        out.contains("def sq(n):"),
        ":source shows the function: {out}\n{err}"
    );
    assert!(
        err.contains("replay failed") && err.contains("ZeroDivisionError"),
        "before the fix the replay fails again: {out}\n{err}"
    );
    assert!(
        out.contains(&format!("left failure {id}")) && out.contains("\n2\n"),
        ":q leaves the view and input runs in the session again: {out}\n{err}"
    );

    // Fix it with a hot-patch on node 2, replay, see it pass.
    ok(&cluster.cli(&[
        "eval",
        &cluster.addr(2),
        "--module",
        "app",
        "def square(n):\n    return n * n\n",
    ]));
    let (_, out, err) = run_script(&cluster, &format!(":pm {id}\n:replay\n"));
    assert!(
        out.contains("replay passed: GET /sq/12 answered 200") && out.contains("432"),
        "after the hot-patch the replay passes: {out}\n{err}"
    );

    // Bad ids say what is wrong and what to do.
    let stale = format!("2.1.{}.1", 1000);
    let unknown = {
        let mut parts: Vec<&str> = id.split('.').collect();
        parts[3] = "99999";
        parts.join(".")
    };
    let (_, out, err) = run_script(
        &cluster,
        &format!(":pm {unknown}\n:pm nonsense\n:pm {stale}\n:frame 0\n:pm 9.1.1.1\n"),
    );
    assert!(
        err.contains(&format!("no failure {unknown}")) && err.contains("push errors"),
        "unknown: {out}\n{err}"
    );
    assert!(
        err.contains("\"nonsense\" is not a failure id"),
        "malformed: {err}"
    );
    assert!(
        err.contains("restarted since failure") && err.contains("gone"),
        "a worker restarted since: {err}"
    );
    assert!(err.contains(":frame works on an open failure"), "{err}");
    assert!(err.contains("not a member"), "a node that is gone: {err}");

    // A user of another app sees neither the failure nor its frames.
    let out = ok(&cluster.cli(&[
        "user",
        "add",
        "other",
        "--role",
        "developer",
        "--app",
        "shop",
        "--to",
        &cluster.addr(1),
    ]));
    let secret = out
        .lines()
        .find(|l| l.starts_with("push_"))
        .expect("a secret")
        .to_string();
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        let out = Command::new(push_bin())
            .args(["errors", &cluster.addr(1), "--json", "--token", &secret])
            .current_dir(cluster.dir.path())
            .env_remove("PUSH_TOKEN")
            .env_remove("PUSH_ADDR")
            .stdin(Stdio::null())
            .output()
            .expect("run push");
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = ok(&listed);
    assert!(
        !text.contains(&id),
        "a user of app shop must not see main's failures: {text}"
    );
    let out = Command::new(push_bin())
        .args(["repl", &cluster.addr(1), "--token", &secret])
        .current_dir(cluster.dir.path())
        .env_remove("PUSH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(format!(":pm {id}\n").as_bytes())?;
            child.wait_with_output()
        })
        .expect("repl");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("is not one of your apps' failures") && !said.contains("scale"),
        "refused without its frames: {said}"
    );
}

/// The editors' side: `push lsp`'s post-mortem commands list the failure, open it, read a
/// frame's locals, evaluate in that frame and replay it, and pass the node's refusals on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lsp_lists_opens_and_evaluates_in_a_failed_frame() {
    let cluster = Cluster::start_with(1, &["--py-workers", "1"]).await;
    cluster.deploy_app("pm", APP, 1, "pm");
    let deadline = Instant::now() + WAIT;
    while get(&cluster.http(1), "/sq/5").await.status != 500 {
        assert!(Instant::now() < deadline, "never a 500");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let root = cluster.dir.path().join("editor");
    std::fs::create_dir_all(&root).expect("root");
    let mut lsp = crate::support::lsp::LspProc::connected(&cluster, &root);

    let listed = lsp
        .command("push.errors", serde_json::json!({}), WAIT)
        .expect("push.errors");
    let row = listed["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["origin"] == "route GET /sq/5"))
        .unwrap_or_else(|| panic!("the route's failure is listed: {listed}"))
        .clone();
    let id = row["id"].as_str().expect("id").to_string();

    let opened = lsp
        .command("push.pm.open", serde_json::json!({"id": id}), WAIT)
        .expect("push.pm.open");
    let frames = opened["frames"].as_array().expect("frames").clone();
    let square = frames
        .iter()
        .position(|f| f["function"] == "square")
        .unwrap_or_else(|| panic!("a frame of square: {opened}"));
    let locals = lsp
        .command(
            "push.pm.locals",
            serde_json::json!({"id": id, "frame": square}),
            WAIT,
        )
        .expect("push.pm.locals");
    let names: Vec<&str> = locals
        .as_array()
        .expect("locals")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert!(names.contains(&"n") && names.contains(&"scale"), "{locals}");
    let value = lsp
        .command(
            "push.pm.eval",
            serde_json::json!({"id": id, "frame": square, "code": "n * 10 + scale"}),
            WAIT,
        )
        .expect("push.pm.eval");
    assert_eq!(value["value"], "50", "{value}");

    // The code is unchanged, so a replay fails again, saying so.
    let replay = lsp
        .command("push.pm.replay", serde_json::json!({"id": id}), WAIT)
        .expect("push.pm.replay");
    assert_eq!(replay["ok"], false, "{replay}");

    // A bad id: the node's message comes back as the LSP error.
    let err = lsp
        .command("push.pm.open", serde_json::json!({"id": "nonsense"}), WAIT)
        .expect_err("a bad id is refused");
    assert!(err.to_string().contains("is not a failure id"), "{err}");
}

/// The app of the diagnostics test: two routes failing on different lines.
const DIAG_APP: &str = r#"import push

def square(n):
    scale = 0
    return n * n // scale

@push.route("GET", "/sq/{n:int}")
def sq(n):
    return str(square(n))

@push.route("GET", "/other/{n:int}")
def other(n):
    raise ValueError("not today")
"#;

/// The 0-based line of DIAG_APP holding `text`.
fn diag_line(text: &str) -> u64 {
    DIAG_APP
        .lines()
        .position(|l| l.contains(text))
        .expect("a line of DIAG_APP") as u64
}

/// Whether a publishDiagnostics for `uri` has a diagnostic on `line` whose message has `part`.
fn has_diagnostic(p: &Json, uri: &str, line: u64, part: &str) -> bool {
    p["uri"] == uri
        && p["diagnostics"].as_array().is_some_and(|ds| {
            ds.iter().any(|d| {
                d["range"]["start"]["line"] == line
                    && d["message"].as_str().is_some_and(|m| m.contains(part))
            })
        })
}

/// Live failures as diagnostics: with the app's `app.py` open in the editor, a request that
/// fails shows up (without asking) as an error on the line that raised, naming the exception,
/// app@version and the route; the failure's id is its code. When the worker drops it (it
/// keeps its last 50), the diagnostic goes, and a route failing for many requests is one
/// diagnostic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_failure_appears_as_a_diagnostic_on_its_line() {
    let cluster = Cluster::start_with(1, &["--py-workers", "1"]).await;
    let root = cluster.dir.path().join("editor");
    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(root.join("push.ron"), "(entry: \"app\")").expect("manifest");
    let file = root.join("app.py");
    std::fs::write(&file, DIAG_APP).expect("app.py");
    ok(&cluster.cli(&[
        "deploy",
        root.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    let uri = format!("file://{}", file.display());
    let mut lsp = crate::support::lsp::LspProc::connected(&cluster, &root);
    lsp.notify(
        "textDocument/didOpen",
        serde_json::json!({"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": DIAG_APP}}),
    );

    let deadline = Instant::now() + WAIT;
    while get(&cluster.http(1), "/sq/5").await.status != 500 {
        assert!(Instant::now() < deadline, "never a 500");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let raising = diag_line("n * n // scale");
    let found = lsp.wait_notification("textDocument/publishDiagnostics", WAIT, |p| {
        has_diagnostic(p, &uri, raising, "route GET /sq/5")
    });
    let d = found["diagnostics"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["range"]["start"]["line"] == raising))
        .expect("the diagnostic")
        .clone();
    let message = d["message"].as_str().expect("message");
    assert!(
        message.starts_with("ZeroDivisionError") && message.contains("main@v1"),
        "{d}"
    );
    assert_eq!(
        (d["severity"].clone(), d["source"].clone()),
        (1.into(), "push".into()),
        "{d}"
    );
    // Its code is the failure's id, which push.errors lists.
    let listed = lsp
        .command("push.errors", serde_json::json!({}), WAIT)
        .expect("push.errors");
    assert!(
        listed["rows"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["id"] == d["code"])),
        "{d} / {listed}"
    );

    // 55 failures of another route: the worker keeps its last 50, so the first one is gone,
    // and its diagnostic with it; the other route's are one diagnostic.
    for n in 0..55 {
        assert_eq!(
            get(&cluster.http(1), &format!("/other/{n}")).await.status,
            500
        );
    }
    let other = diag_line("not today");
    let after = lsp.wait_notification("textDocument/publishDiagnostics", WAIT, |p| {
        has_diagnostic(p, &uri, other, "ValueError: not today")
            && !has_diagnostic(p, &uri, raising, "")
            && has_diagnostic(p, &uri, other, " times, newest failure ")
    });
    let on_other = after["diagnostics"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .filter(|d| d["range"]["start"]["line"] == other)
                .count()
        })
        .unwrap_or(0);
    assert_eq!(on_other, 1, "{after}");
}

/// A daemon that does some work, then raises.
const DAEMON_APP: &str = r#"import push

@push.daemon(on=1)
def cruncher(ctx):
    batch = [n * n for n in range(5)]
    total = sum(batch)
    raise RuntimeError(f"cruncher gave up at {total}")
"#;

/// A daemon's crash is kept like a route's: `push errors --json` lists it with the daemon as
/// its origin and app@version, `:pm` opens it with the daemon function's frame and locals, and
/// the daemon still restarts with backoff (its second crash is kept too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_daemon_is_kept_opened_and_still_restarts() {
    let cluster = Cluster::start_with(1, &["--py-workers", "1"]).await;
    cluster.deploy_app("pm", DAEMON_APP, 1, "a crashing daemon");

    let origin = "daemon cruncher";
    let rows = errors_until(&cluster, 1, |rows| {
        rows.iter().any(|r| r["origin"] == origin)
    });
    let row = rows
        .iter()
        .find(|r| r["origin"] == origin)
        .expect("the daemon's failure");
    assert_eq!(
        (
            row["app"].clone(),
            row["version"].clone(),
            row["node"].clone()
        ),
        ("main".into(), 1.into(), 1.into()),
        "app@version and node: {row}"
    );
    assert_eq!(
        row["error"], "RuntimeError: cruncher gave up at 30",
        "{row}"
    );
    let id = row["id"].as_str().expect("an id").to_string();

    // Opened in the REPL: the daemon function's frame, where it raised, with its locals.
    let (_, out, err) = run_script(&cluster, &format!(":pm {id}\n:frame 0\ntotal + 1\n:q\n"));
    assert!(
        out.contains("daemon cruncher") && out.contains("main") && out.contains("v1"),
        "the failure's origin and app@version: {out}\n{err}"
    );
    assert!(
        out.contains("frames:") && out.contains(" 0: ") && out.contains("in cruncher"),
        "frame 0 is the daemon's function: {out}\n{err}"
    );
    assert!(
        out.contains("total = 30") && out.contains("batch = [0, 1, 4, 9, 16]"),
        "the daemon's locals: {out}\n{err}"
    );
    assert!(out.contains("\n31\n"), "an eval in its frame: {out}\n{err}");
    assert!(
        out.contains(&format!("left failure {id}")),
        ":q leaves the view: {out}\n{err}"
    );

    // The daemon restarts as before: `push daemons` counts a restart, and its next crash is
    // kept as a failure of its own.
    let deadline = Instant::now() + WAIT;
    loop {
        let table = ok(&cluster.cli(&["daemons", "--to", &cluster.addr(1)]));
        let restarts = table
            .lines()
            .find(|l| l.starts_with("cruncher "))
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|n| n.parse::<u32>().ok());
        if restarts.is_some_and(|n| n >= 1) {
            assert!(
                table.contains("last crash: RuntimeError: cruncher gave up at 30"),
                "{table}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never restarted: {table}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = errors_until(&cluster, 1, |rows| {
        rows.iter().filter(|r| r["origin"] == origin).count() >= 2
    });
    let ids: Vec<&str> = rows
        .iter()
        .filter(|r| r["origin"] == origin)
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        ids.len() >= 2 && ids[0] != id && ids.contains(&id.as_str()),
        "newest first, the first crash still kept: {ids:?}"
    );
}
