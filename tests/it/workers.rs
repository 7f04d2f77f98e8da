//! Python in worker processes: every kind of worker death (os._exit, a segfault in app code,
//! kill -9, memory over `--py-worker-max-rss`) costs only the requests on that worker (502),
//! the worker comes back, and Raft does not notice; handler timeouts (504, and a worker stuck
//! in C code is recycled); the deploy gate's scratch worker refuses cluster writes; a
//! hot-patch reaches every worker; an eval stuck in C code is restarted by a second Ctrl-C;
//! a killed worker's temporary folder is removed (and stale ones at node start).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use push_protocol::{Client, Op, ReadMode, Reply, Value, WorkerRow};

use crate::support::cluster::{fails, get as kv_get, ok, push_bin, set as kv_set, with_stdin};
use crate::support::eval::eval_streams;
use crate::support::http::get;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(30);

const APP: &str = r#"
import ctypes, os, time
import push

def greet():
    return "hello"

@push.route("GET", "/pid")
def pid():
    return f"{os.getpid()} {greet()}"

@push.route("GET", "/exit")
def exit_now():
    os._exit(3)

@push.route("GET", "/segv")
def segv():
    ctypes.string_at(0)

@push.route("GET", "/hog")
def hog():
    global held
    held = bytearray(400 << 20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    time.sleep(30)
    return "survived"

@push.route("GET", "/sleep", timeout=1)
def sleep_in_c():
    time.sleep(60)
    return "woke"

@push.route("GET", "/spin", timeout=1)
def spin():
    while True:
        pass
"#;

async fn rows(cluster: &Cluster, id: u64) -> Vec<WorkerRow> {
    cluster
        .status(id)
        .await
        .map(|s| s.workers)
        .unwrap_or_default()
}

fn restarts(rows: &[WorkerRow]) -> u64 {
    rows.iter().map(|w| w.restarts).sum()
}

/// Waits until node `id` has had at least `at_least` worker restarts and every worker is up.
async fn wait_restarted(cluster: &Cluster, id: u64, at_least: u64) -> Vec<WorkerRow> {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = rows(cluster, id).await;
        if restarts(&now) >= at_least && !now.is_empty() && now.iter().all(|w| w.up) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}'s workers did not come back: {now:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_serving(cluster: &Cluster, id: u64) {
    let deadline = Instant::now() + WAIT;
    while get(&cluster.http(id), "/pid").await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "never served\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes and reads through node 1 every ~50 ms until stopped; counts failures.
fn canary(
    cluster: &Cluster,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    let (addr, token) = (cluster.addr(1), cluster.token.clone());
    tokio::spawn(async move {
        let client = Client::connect(&addr, &token)
            .await
            .expect("canary connects");
        let mut n = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            n += 1;
            let key = format!("k{}", n % 10);
            let wrote = tokio::time::timeout(
                Duration::from_secs(5),
                kv_set(&client, "canary", &key, Value::Int(n as i64)),
            )
            .await;
            let read = tokio::time::timeout(
                Duration::from_secs(5),
                kv_get(&client, "canary", &key, ReadMode::Linearizable),
            )
            .await;
            if wrote.is_err() || !matches!(read, Ok(Some(Value::Int(v))) if v == n as i64) {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_worker_costs_its_requests_a_502_and_raft_does_not_notice() {
    let cluster =
        Cluster::start_with(3, &["--py-workers", "2", "--py-worker-max-rss", "200"]).await;
    cluster.deploy_app("crashes", APP, 1, "crash kinds");
    wait_serving(&cluster, 1).await;
    let before = cluster.status(1).await.expect("status");
    let (stop, failures) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let canary = canary(&cluster, stop.clone(), failures.clone());

    let mut expected = restarts(&rows(&cluster, 1).await);
    for (path, said) in [
        ("/exit", "exited with code 3"),
        ("/segv", "was killed by signal 11 (SIGSEGV)"),
        ("/hog", "over its memory limit"),
    ] {
        let r = get(&cluster.http(1), path).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        expected += 1;
        wait_restarted(&cluster, 1, expected).await;
        assert!(
            cluster.logs().contains(said),
            "the log says how the worker of {path} ended ({said})\n{}",
            cluster.logs()
        );
        assert_eq!(
            get(&cluster.http(1), "/pid").await.status,
            200,
            "serving again after {path}"
        );
    }
    // A crash in C code leaves the Python traceback of the thread that crashed in the log
    // (read whole: the restarts since may have pushed it out of the tail).
    let logs = std::fs::read_to_string(cluster.data_dir(1).join("node.log")).expect("node log");
    assert!(
        logs.contains("Fatal Python error: Segmentation fault") && logs.contains(" in segv"),
        "no traceback of the segfault\n{logs}"
    );
    // kill -9 from outside.
    let victim = rows(&cluster, 1).await[0].pid;
    assert!(victim > 0);
    // SAFETY: kill(2) on a worker of a node this test started.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    expected += 1;
    let after = wait_restarted(&cluster, 1, expected).await;
    assert!(
        after.iter().all(|w| w.pid != victim),
        "a new process took the slot: {after:?}"
    );
    assert!(cluster.logs().contains("was killed by signal 9 (SIGKILL)"));
    assert_eq!(get(&cluster.http(1), "/pid").await.status, 200);

    stop.store(true, Ordering::Relaxed);
    let writes = canary.await.expect("canary");
    assert!(writes > 0);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "the canary saw failures\n{}",
        cluster.logs()
    );
    let now = cluster.status(1).await.expect("status");
    assert_eq!(
        (now.term, now.leader),
        (before.term, before.leader),
        "no election happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_timeout_gets_504_and_a_worker_stuck_in_c_is_recycled() {
    let cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    cluster.deploy_app("timeouts", APP, 1, "timeouts");
    wait_serving(&cluster, 1).await;
    let start = restarts(&rows(&cluster, 1).await);
    // Interruptible: the KeyboardInterrupt stops the loop, the worker stays.
    let r = get(&cluster.http(1), "/spin").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("timeout of 1 s"), "{}", r.text());
    assert_eq!(get(&cluster.http(1), "/pid").await.status, 200);
    // Stuck in C (time.sleep): 504 at once, then the worker is replaced.
    let r = get(&cluster.http(1), "/sleep").await;
    assert_eq!(r.status, 504, "{}", r.text());
    wait_restarted(&cluster, 1, start + 1).await;
    assert!(cluster
        .logs()
        .contains("did not stop within 2s of its interrupt"));
    assert_eq!(get(&cluster.http(1), "/pid").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_gate_imports_in_a_scratch_worker_that_refuses_writes() {
    let cluster = Cluster::start(1).await;
    cluster.deploy_app(
        "gate",
        "import push\n\n@push.route('GET', '/')\ndef index():\n    return 'v1'\n",
        1,
        "v1",
    );
    let dir = cluster.dir.path().join("gate");
    std::fs::write(
        dir.join("app.py"),
        "import push\n\nseen = push.kv('cfg').get('x')\npush.kv('cfg')['x'] = 'set at import'\n",
    )
    .expect("write");
    let err = fails(&cluster.cli(&[
        "deploy",
        dir.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    assert!(
        err.contains("HEAD unchanged") && err.contains("move module-level writes"),
        "{err}"
    );
    let c = cluster.client(1).await;
    assert_eq!(
        kv_get(&c, "cfg", "x", ReadMode::Linearizable).await,
        None,
        "the import's write never reached the cluster"
    );
    let out = ok(&cluster.cli(&["versions", "--to", &cluster.addr(1)]));
    assert!(out.contains("v1"), "{out}");
    // Reads at import time are fine: kv, and the app's config and secrets.
    let to = cluster.addr(1);
    ok(&cluster.cli(&["config", "set", "main", "mode", "fast", "--to", &to]));
    ok(&with_stdin(
        Command::new(push_bin())
            .args(["secret", "set", "main", "api-key", "--to", &to])
            .arg("--token-file")
            .arg(&cluster.token_file)
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN"),
        "s3cret",
    ));
    std::fs::write(
        dir.join("app.py"),
        "import push\n\nseen = push.kv('cfg').get('x')\nMODE = push.config('mode', 'slow')\nKEY = push.secret('api-key')\nassert MODE == 'fast' and KEY == 's3cret'\n",
    )
    .expect("write");
    ok(&cluster.cli(&["deploy", dir.to_str().expect("utf8"), "--to", &to]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_patch_reaches_every_worker_of_the_node() {
    let cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    cluster.deploy_app("patch", APP, 1, "patch");
    wait_serving(&cluster, 1).await;
    wait_restarted(&cluster, 1, 0).await;
    let out = cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "--module",
        "app",
        "def greet():\n    return 'patched'\n",
    ]);
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("applied in 2 of 2 python workers"), "{said}");
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let text = get(&cluster.http(1), "/pid").await.text();
        let (pid, greeting) = text.split_once(' ').expect("pid and greeting");
        assert_eq!(greeting, "patched", "every worker serves the patch");
        pids.insert(pid.to_string());
    }
    assert_eq!(pids.len(), 2, "requests reached both workers: {pids:?}");

    // What runs in a module without defining a name runs once, on one worker: a queue put
    // and a kv write are not repeated on the other worker (nor on one started later).
    let out = cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "--module",
        "app",
        "LIMIT = 3\npush.kv('once')['n'] = push.kv('once').get('n', 0) + 1\npush.queue('once').put(1)\n",
    ]);
    ok(&out);
    let out = ok(&cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "import push; (push.kv('once')['n'], len(push.queue('once')))",
    ]));
    assert!(out.contains("(1, 1)"), "ran once: {out}");
    // The name it defined reached both workers: a handler patched to use it works on each.
    let patch = "def greet():\n    return f'limit {LIMIT}'\n";
    ok(&cluster.cli(&["eval", &cluster.addr(1), "--module", "app", patch]));
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let text = get(&cluster.http(1), "/pid").await.text();
        let (pid, greeting) = text.split_once(' ').expect("pid and greeting");
        assert_eq!(greeting, "limit 3", "every worker has LIMIT");
        pids.insert(pid.to_string());
    }
    assert_eq!(pids.len(), 2, "requests reached both workers: {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eval_stuck_in_c_is_restarted_by_a_second_interrupt_and_says_names_are_lost() {
    let cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    let c = cluster.client(1).await;
    let s = match c.call(Op::SessionOpen).await.expect("open") {
        Reply::Session { id } => id,
        other => panic!("{other:?}"),
    };
    let (_, _, r) = eval_streams(&c, Some(s), "x = 41").await;
    assert!(r.error.is_none());
    let (addr, token) = (cluster.addr(1), cluster.token.clone());
    // Touches a marker, then sleeps in C; an interrupt landing in Python just before the sleep
    // (a loaded machine) is swallowed, so the eval is stuck in C either way.
    let marker = cluster.dir.path().join("sleeping");
    let code = format!(
        "import pathlib, time\nwhile True:\n    try:\n        pathlib.Path({:?}).touch()\n        time.sleep(120)\n        break\n    except KeyboardInterrupt:\n        pass\n",
        marker.display().to_string()
    );
    let stuck = tokio::spawn(async move {
        let c = Client::connect(&addr, &token).await.expect("connect");
        let mut replies = c
            .call_stream(Op::Eval {
                session: Some(s),
                code,
                module: None,
            })
            .await
            .expect("send eval");
        let mut said = String::new();
        while let Some(reply) = replies.recv().await {
            match reply {
                Ok(Reply::Output { text, .. }) => said.push_str(&text),
                Ok(other) => said.push_str(&format!("{other:?}")),
                Err(e) => said.push_str(&e.message),
            }
        }
        said
    });
    // Interrupt (once the eval is about to sleep) until the node restarts the worker (a
    // Ctrl-C 2 s after the first one).
    let deadline = Instant::now() + WAIT;
    cluster
        .wait_for_marker(&marker, deadline, "the eval never ran")
        .await;
    while !stuck.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the stuck eval was never restarted\n{}",
            cluster.logs()
        );
        let _ = c.call(Op::Interrupt { session: s }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let said = stuck.await.expect("task");
    assert!(
        said.contains("has not stopped 2 s after Ctrl-C") && said.contains("SIGKILL"),
        "the REPL is told the eval is stuck, then that its worker was restarted: {said}"
    );
    let (_, err, r) = eval_streams(&c, Some(s), "'x' in globals()").await;
    assert_eq!(
        r.value.as_deref(),
        Some("False"),
        "the session's names went with its worker"
    );
    assert!(err.contains("names defined before are gone"), "{err}");
}

const DAEMON_APP: &str = r#"
import os
import push

starts = push.kv("starts")

@push.daemon
def beat(ctx):
    while True:
        n = starts.get("beat")
        if starts.cas("beat", n, [(n or [0])[0] + 1, os.getpid()]):
            break
    while ctx.sleep(0.2):
        pass
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_of_a_dead_worker_start_again_on_its_replacement() {
    let cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    cluster.deploy_app("daemons", DAEMON_APP, 1, "a daemon");
    let c = cluster.client(1).await;
    let started = |v: Option<Value>| match v {
        Some(Value::List(items)) => match (items.first(), items.get(1)) {
            (Some(Value::Int(n)), Some(Value::Int(pid))) => Some((*n, *pid as u32)),
            _ => None,
        },
        _ => None,
    };
    let deadline = Instant::now() + WAIT;
    let (first, pid) = loop {
        if let Some(s) = started(kv_get(&c, "starts", "beat", ReadMode::Linearizable).await) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never started\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let tasks_worker = rows(&cluster, 1)
        .await
        .into_iter()
        .find(|w| w.tasks)
        .expect("a tasks worker");
    assert_eq!(tasks_worker.pid, pid, "daemons run on the tasks worker");
    // SAFETY: kill(2) on a worker of a node this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((n, new_pid)) =
            started(kv_get(&c, "starts", "beat", ReadMode::Linearizable).await)
        {
            if n > first {
                assert_ne!(new_pid, pid, "started again in the new worker");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not start again\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repl_lists_workers_and_moves_to_one() {
    let cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    wait_restarted(&cluster, 1, 0).await;
    let (fine, out, err) = crate::repl::run_script(
        &cluster,
        ":workers\n:use 1/2\n:workers\nimport os\nos.getpid()\n:use 1/9\n",
    );
    assert!(fine, "{err}");
    assert!(
        out.contains("node 1 python workers") && out.contains("*w1"),
        "{out}"
    );
    assert!(
        out.contains("now on node 1 at") && out.contains("python worker w2"),
        "{out}"
    );
    assert!(
        out.contains("*w2"),
        "after :use 1/2 the session is on w2: {out}"
    );
    let w2 = rows(&cluster, 1)
        .await
        .into_iter()
        .find(|w| w.slot == 2)
        .expect("w2")
        .pid;
    assert!(
        out.contains(&w2.to_string()),
        "os.getpid() is w2's pid {w2}: {out}"
    );
    assert!(
        err.contains("no python worker w9") && err.contains("w1 to w2"),
        "{err}"
    );
}

/// The `push-worker-PID-*` folders of worker `pid` in the temporary directory.
fn temp_folders(pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("push-worker-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Every path under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// The node's one folder of the versions' files its workers share (`push-worker-NODEPID-files-*`).
fn shared_folder(cluster: &Cluster, id: u64) -> std::path::PathBuf {
    let node = cluster.pid(id).expect("the node runs");
    let folders = temp_folders(node);
    assert_eq!(folders.len(), 1, "{folders:?}");
    folders[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_workers_share_one_copy_of_a_version_which_goes_with_the_node() {
    let mut cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    cluster.deploy_app("tmpapp", APP, 1, "v1");
    wait_serving(&cluster, 1).await;
    let shared = shared_folder(&cluster, 1);
    assert!(shared.join("main/v1").is_dir(), "{:?}", walk(&shared));
    let workers = rows(&cluster, 1).await;
    assert!(workers.len() >= 2, "{workers:?}");
    for w in &workers {
        assert!(
            temp_folders(w.pid).is_empty(),
            "worker {} wrote a copy of its own: {:?}",
            w.pid,
            temp_folders(w.pid)
        );
    }
    // A killed worker's replacement serves from the same copy.
    let victim = workers[0].pid;
    // SAFETY: kill(2) on a worker of a node this test started.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    wait_restarted(&cluster, 1, 1).await;
    wait_serving(&cluster, 1).await;
    assert!(shared.join("main/v1").is_dir());
    // Stopped, the node removes it.
    cluster.stop(1);
    assert!(!shared.exists(), "{} stayed", shared.display());

    // Killed, the node leaves it; the next node start removes it, and the folder of another
    // process that ended (that of a live process stays).
    cluster.restart(1);
    cluster.wait_leader(WAIT).await;
    wait_serving(&cluster, 1).await;
    let shared = shared_folder(&cluster, 1);
    cluster.kill(1);
    assert!(shared.exists());
    let mut ended = std::process::Command::new("true").spawn().expect("true");
    let dead = ended.id();
    ended.wait().expect("true ends");
    let stale = std::env::temp_dir().join(format!("push-worker-{dead}-stale"));
    std::fs::create_dir_all(stale.join("main/v1")).expect("stale folder");
    let live = std::env::temp_dir().join(format!("push-worker-{}-live", std::process::id()));
    std::fs::create_dir_all(&live).expect("live folder");
    cluster.restart(1);
    cluster.wait_leader(WAIT).await;
    wait_serving(&cluster, 1).await;
    // The sweep runs in the background through every such folder of the machine's temporary
    // directory (other test clusters' too), so it may take a while on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(180);
    while stale.exists() || shared.exists() {
        assert!(
            Instant::now() < deadline,
            "a stale folder stayed\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(live.exists(), "a live process's folder went");
    std::fs::remove_dir_all(&live).expect("remove the live folder");
}
