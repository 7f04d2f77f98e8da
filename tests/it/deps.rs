//! Dependencies shipped through the cluster: a wheel built here (no internet) is resolved by
//! `push deploy --wheels`, uploaded once, installed on every node as an environment and
//! imported by the app on all three nodes; a new package version switches every node while
//! requests keep succeeding; rollback; an unchanged environment re-sends nothing; a
//! wrong-platform wheel, a failing install and a failing import are refused naming the
//! package with HEAD untouched; `push envs` lists the environments. Evals in the app's
//! module, sessions that evaluate there and the app's lambdas run in the app's pool, where
//! the dependency imports; `:use` reaches the app pool's workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use push_protocol::{Client, DebugAction, DebugReply, EvalResult, Op, Reply, Stream};

use crate::support::cluster::{fails, ok};
use crate::support::eval::eval_streams;
use crate::support::http::{request, wait_get};
use crate::support::Cluster;

pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Writes a wheel of package `tinypkg` (version `version`, tags `tag`) whose `__init__.py`
/// is `init`, into `dir`; with `corrupt`, the module's bytes no longer match their CRC.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile, os
out, version, tag, init, corrupt = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
name = f"tinypkg-{version}-{tag}.whl"
info = f"tinypkg-{version}.dist-info"
files = {
    "tinypkg/__init__.py": init.encode(),
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: tinypkg\nVersion: {version}\n".encode(),
    f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: push-test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
}
def digest(b):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
record = "".join(f"{p},{digest(b)},{len(b)}\n" for p, b in files.items()) + f"{info}/RECORD,,\n"
files[f"{info}/RECORD"] = record.encode()
path = os.path.join(out, name)
with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    for p, b in files.items():
        z.writestr(zipfile.ZipInfo(p, (2020, 1, 1, 0, 0, 0)), b)
if corrupt:
    data = open(path, "rb").read()
    marker = b"MARKER"
    assert marker in data
    open(path, "wb").write(data.replace(marker, b"MARKEX", 1))
print(name)
"#;

pub(crate) fn wheelhouse(
    root: &Path,
    name: &str,
    version: &str,
    tag: &str,
    init: &str,
    corrupt: bool,
) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("wheelhouse");
    let out = std::process::Command::new("python3")
        .args(["-c", MAKE_WHEEL])
        .arg(&dir)
        .args([version, tag, init, if corrupt { "1" } else { "0" }])
        .output()
        .expect("python3 builds the test wheel");
    assert!(
        out.status.success(),
        "building the wheel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

pub(crate) fn good_init(version: &str) -> String {
    format!("VERSION = {version:?}\n# MARKER\n")
}

const APP: &str = r#"
import os, sys
import push
import tinypkg

@push.route("GET", "/dep")
def dep():
    return f"{tinypkg.VERSION} {os.path.basename(os.path.dirname(os.path.dirname(tinypkg.__file__)))}"
"#;

pub(crate) fn write_app(root: &Path, requirement: &str, extra: &str) -> PathBuf {
    let dir = root.join("app");
    std::fs::create_dir_all(&dir).expect("app dir");
    std::fs::write(dir.join("app.py"), format!("{APP}{extra}")).expect("app.py");
    std::fs::write(dir.join("requirements.txt"), format!("{requirement}\n")).expect("reqs");
    dir
}

pub(crate) fn deploy(cluster: &Cluster, app: &Path, wheels: &Path) -> std::process::Output {
    cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--wheels",
        wheels.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ])
}

/// Waits until `/dep` on every node answers with `version` first.
pub(crate) async fn wait_all_serve(cluster: &Cluster, version: &str) {
    let first = format!("{version} ");
    for id in 1..=3 {
        wait_get(&cluster.http(id), "/dep", WAIT, |r| {
            r.status == 200 && r.text().starts_with(&first)
        })
        .await
        .unwrap_or_else(|last| panic!("node {id} does not serve tinypkg {version}: {last}"));
    }
}

fn head(cluster: &Cluster) -> String {
    ok(&cluster.cli(&["versions", "--to", &cluster.addr(1)]))
        .lines()
        .find(|l| l.starts_with('*'))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dependencies_ship_install_switch_and_refuse() {
    let cluster = Cluster::start_with(3, &["--py-workers", "1"]).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let house1 = wheelhouse(root, "h1", "1.0", "py3-none-any", &good_init("1.0"), false);
    let app = write_app(root, "tinypkg", "");

    // v1: the wheel is uploaded once and every node imports it from its environment.
    let out = deploy(&cluster, &app, &house1);
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("dependencies: 1 wheels"), "{stderr}");
    assert!(stderr.contains("uploading 1 ("), "{stderr}");
    assert!(stdout.contains("deployed main@v1"), "{stdout}");
    wait_all_serve(&cluster, "1.0").await;
    let r = request(&cluster.http(2), "GET", "/dep", &[], b"")
        .await
        .expect("get");
    let env_dir = r.text().split(' ').nth(1).unwrap_or_default().to_string();
    assert_eq!(
        env_dir.len(),
        64,
        "the package comes from envs/<hash>: {}",
        r.text()
    );
    assert!(cluster.data_dir(3).join("envs").join(&env_dir).is_dir());

    // v2: a code change with the same dependencies re-sends no wheel and keeps the env.
    let app = write_app(root, "tinypkg", "\nCHANGED = 1\n");
    let out = deploy(&cluster, &app, &house1);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("uploading 0 (0 KB), 1 already on the cluster"),
        "{stderr}"
    );

    // v3: tinypkg 2.0 while requests keep flowing to every node.
    let house2 = wheelhouse(root, "h2", "2.0", "py3-none-any", &good_init("2.0"), false);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for id in 1..=3 {
        let (addr, stop, failures, served) = (
            cluster.http(id),
            stop.clone(),
            failures.clone(),
            served.clone(),
        );
        load.push(tokio::spawn(async move {
            let until = Instant::now() + WAIT;
            for _ in 0..10_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > until {
                    break;
                }
                match request(&addr, "GET", "/dep", &[], b"").await {
                    Ok(r) if r.status == 200 => served.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("node {id}: {:?}", other.map(|r| (r.status, r.text())));
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    ok(&deploy(&cluster, &app, &house2));
    wait_all_serve(&cluster, "2.0").await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the switch"
    );
    assert!(served.load(Ordering::Relaxed) > 0);

    // Rollback to v2: its environment is still installed.
    ok(&cluster.cli(&["rollback", "2", "--to", &cluster.addr(1)]));
    wait_all_serve(&cluster, "1.0").await;

    // push envs: both environments, their versions, HEAD's marked.
    let envs = ok(&cluster.cli(&["envs", "--to", &cluster.addr(2)]));
    assert!(envs.contains("v1,v2 (HEAD)"), "{envs}");
    assert!(envs.contains("tinypkg-1.0-py3-none-any.whl"), "{envs}");
    assert!(
        envs.contains("tinypkg-2.0-py3-none-any.whl") && envs.contains("MB"),
        "{envs}"
    );

    let before = head(&cluster);
    // A wheel for another platform only: refused by the resolver, naming the package.
    let house3 = wheelhouse(
        root,
        "h3",
        "3.0",
        "cp39-cp39-win_amd64",
        &good_init("3.0"),
        false,
    );
    let app = write_app(root, "tinypkg==3.0", "");
    let err = fails(&deploy(&cluster, &app, &house3));
    assert!(
        err.contains("tinypkg") && err.contains("HEAD unchanged"),
        "{err}"
    );
    // A wheel that cannot be installed (damaged): refused by the leader's install.
    let house4 = wheelhouse(root, "h4", "4.0", "py3-none-any", &good_init("4.0"), true);
    let app = write_app(root, "tinypkg==4.0", "");
    let err = fails(&deploy(&cluster, &app, &house4));
    assert!(
        err.contains("tinypkg") && err.contains("HEAD unchanged"),
        "{err}"
    );
    // A package that fails to import: refused by the deploy gate.
    let house5 = wheelhouse(
        root,
        "h5",
        "5.0",
        "py3-none-any",
        "raise ImportError('tinypkg 5.0 is broken on purpose')\n# MARKER\n",
        false,
    );
    let app = write_app(root, "tinypkg==5.0", "");
    let err = fails(&deploy(&cluster, &app, &house5));
    assert!(
        err.contains("tinypkg 5.0 is broken on purpose") && err.contains("HEAD unchanged"),
        "{err}"
    );
    assert_eq!(head(&cluster), before);
    wait_all_serve(&cluster, "1.0").await;
}

/// Evaluates `code` in `module` (in `session`): stderr and the result.
async fn eval_in(
    client: &Client,
    session: Option<u64>,
    module: &str,
    code: &str,
) -> (String, EvalResult) {
    let mut replies = client
        .call_stream(Op::Eval {
            session,
            code: code.into(),
            module: Some(module.into()),
        })
        .await
        .expect("send eval");
    let mut err = String::new();
    while let Some(reply) = replies.recv().await {
        match reply.expect("eval reply") {
            Reply::Output {
                stream: Stream::Stderr,
                text,
            } => err.push_str(&text),
            Reply::Output { .. } => {}
            Reply::Evaluated(r) => return (err, *r),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no result for {code:?}");
}

const LAMBDAS: &str = r#"

def dep_version():
    import tinypkg
    return tinypkg.VERSION

@push.route("GET", "/dv")
def dv():
    return dep_version()

@push.route("GET", "/dep-boom")
def dep_boom():
    pkg_version = tinypkg.VERSION
    raise ValueError(f"no luck with {pkg_version}")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evals_sessions_and_lambdas_of_an_app_run_in_its_pool() {
    let cluster = Cluster::start_with(1, &["--py-workers", "1"]).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let house = wheelhouse(root, "h1", "1.0", "py3-none-any", &good_init("1.0"), false);
    let app = write_app(root, "tinypkg", LAMBDAS);
    ok(&deploy(&cluster, &app, &house));
    let deadline = Instant::now() + WAIT;
    while !request(&cluster.http(1), "GET", "/dep", &[], b"")
        .await
        .is_ok_and(|r| r.status == 200)
    {
        assert!(
            Instant::now() < deadline,
            "never served\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = cluster.client(1).await;

    // An eval in the app's module (`:in app`, an editor's eval in app.py) imports it.
    let (_, r) = eval_in(&client, None, "app", "import tinypkg\ntinypkg.VERSION").await;
    assert_eq!(r.value.as_deref(), Some("'1.0'"), "{r:?}");
    // A scratch eval runs in the main pool, without the app's dependencies.
    let (_, _, r) = eval_streams(&client, None, "import tinypkg").await;
    assert_eq!(
        r.error.map(|e| e.type_name).as_deref(),
        Some("ModuleNotFoundError")
    );

    // Lambdas of the app: by path from a scratch eval, and shipped from the app's module.
    let (_, _, r) = eval_streams(&client, None, "push.run('app:dep_version')").await;
    assert_eq!(r.value.as_deref(), Some("'1.0'"), "{r:?}");
    let (_, r) = eval_in(&client, None, "app", "push.run(dep_version, on='all')").await;
    assert_eq!(r.value.as_deref(), Some("{1: '1.0'}"), "{r:?}");

    // A session that evaluates in the app's module moves to the app's pool, says so, and
    // stays there: its scratch evals import the dependency too.
    let session = match client.call(Op::SessionOpen).await.expect("open") {
        Reply::Session { id } => id,
        other => panic!("unexpected {other:?}"),
    };
    let (err, r) = eval_in(&client, Some(session), "app", "tinypkg.VERSION").await;
    assert_eq!(r.value.as_deref(), Some("'1.0'"), "{r:?}");
    assert!(err.contains("moved to app main's python pool"), "{err}");
    let (_, err, r) = eval_streams(&client, Some(session), "import tinypkg\ntinypkg.VERSION").await;
    assert_eq!(r.value.as_deref(), Some("'1.0'"), "{r:?} {err}");
    assert!(err.is_empty(), "{err}");

    // The app pool's worker is listed with its pool, numbered in it, holding the session.
    let rows = cluster.status(1).await.expect("status").workers;
    let app_row = rows
        .iter()
        .find(|w| w.pool.as_deref().is_some_and(|p| p.starts_with("main/")))
        .unwrap_or_else(|| panic!("no app-pool row: {rows:?}"));
    assert_eq!(app_row.slot, 1, "{rows:?}");
    assert!(app_row.sessions.contains(&session), "{rows:?}");
    let main_row = rows.iter().find(|w| w.pool.is_none()).expect("main row");
    assert!(!main_row.sessions.contains(&session), "{rows:?}");

    // `:use ID/main/1` opens a session on that worker; `:use ID/nope/1` is refused, naming
    // the pools there are.
    let pool = app_row.pool.clone();
    let on = client
        .call(Op::SessionOpenOn { worker: 1, pool })
        .await
        .expect("open on the app pool's w1");
    let Reply::Session { id: on } = on else {
        panic!("unexpected {on:?}")
    };
    let (_, _, r) = eval_streams(&client, Some(on), "import tinypkg\ntinypkg.VERSION").await;
    assert_eq!(r.value.as_deref(), Some("'1.0'"), "{r:?}");
    let refused = client
        .call(Op::SessionOpenOn {
            worker: 1,
            pool: Some("nope".into()),
        })
        .await
        .expect_err("no such pool");
    assert!(
        refused.to_string().contains("no python pool nope"),
        "{refused}"
    );

    // A failure in the app's pool is listed with an id naming that pool, and opens there.
    let r = request(&cluster.http(1), "GET", "/dep-boom", &[], b"")
        .await
        .expect("boom");
    assert_eq!(r.status, 500);
    let debug = |action| Op::Debug {
        action,
        here: false,
        scope: Vec::new(),
    };
    let rows = match client
        .call(debug(DebugAction::Errors))
        .await
        .expect("errors")
    {
        Reply::Debug(DebugReply::Errors { rows, .. }) => rows,
        other => panic!("unexpected {other:?}"),
    };
    let row = rows
        .iter()
        .find(|r| r.error.contains("no luck with 1.0"))
        .unwrap_or_else(|| panic!("the app pool's failure is not listed: {rows:?}"));
    assert_eq!(row.id.split('.').count(), 5, "{row:?}");
    let opened = client
        .call(debug(DebugAction::Open { id: row.id.clone() }))
        .await
        .expect("open");
    let Reply::Debug(DebugReply::Opened(view)) = opened else {
        panic!("unexpected {opened:?}")
    };
    assert!(
        view.frames.iter().any(|f| f.function == "dep_boom"),
        "{view:?}"
    );

    // A trace reaches the app pool's workers: calls of dep_version made through /dv.
    let tracer = cluster.client(1).await;
    let trace = tokio::spawn(async move {
        tracer
            .call(Op::Debug {
                action: DebugAction::Trace {
                    target: "app.dep_version".into(),
                    max: 1,
                    secs: 30,
                },
                here: true,
                scope: Vec::new(),
            })
            .await
    });
    let deadline = Instant::now() + WAIT;
    while !trace.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the trace saw no call of dep_version"
        );
        let _ = request(&cluster.http(1), "GET", "/dv", &[], b"").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match trace.await.expect("trace task").expect("trace") {
        Reply::Debug(DebugReply::Traced { events, why, .. }) => {
            assert_eq!(events, 1, "{why}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
