//! The embedded Python runtime: code at HEAD on every node, the import hook, hot reload,
//! the deploy gate, web handlers and the `push` module; app modules first imported by a
//! handler at request time.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::cluster::{fails, ok};
use crate::support::http::{get, request, wait_get};
use crate::support::Cluster;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// Polls `GET path` on node `id` until a handler answers (200) with a body containing `want`
/// (a 404 names the app and version, so its body alone proves nothing).
async fn wait_body(cluster: &Cluster, id: u64, path: &str, want: &str) {
    let within = Duration::from_secs(10);
    wait_get(&cluster.http(id), path, within, |r| {
        r.status == 200 && r.text().contains(want)
    })
    .await
    .unwrap_or_else(|last| {
        panic!(
            "node {id} never served {want:?}; last: {last}\n{}",
            cluster.logs()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_hello_world_on_every_node_with_rollback_and_pinning() {
    let cluster = Cluster::start(3).await;
    let v1 = repo("examples/hello-web");
    let v2 = repo("examples/hello-web-v2");
    ok(&cluster.cli(&["deploy", &v1, "--to", &cluster.addr(2), "-m", "v1"]));
    for id in 1..=3 {
        wait_body(&cluster, id, "/", &format!("hello from v1 on node {id}")).await;
    }
    ok(&cluster.cli(&["deploy", &v2, "--to", &cluster.addr(3), "-m", "v2"]));
    for id in 1..=3 {
        wait_body(&cluster, id, "/", &format!("HELLO FROM V2 on node {id}")).await;
    }
    // Pin to v1 while HEAD is v2; the served version is reported in a header.
    let pinned = request(
        &cluster.http(1),
        "GET",
        "/",
        &[("X-Push-Version", "1")],
        b"",
    )
    .await
    .expect("pinned");
    assert_eq!(pinned.text(), "hello from v1 on node 1\n");
    assert_eq!(pinned.header("x-push-version"), Some("1"));
    let head = get(&cluster.http(1), "/").await;
    assert_eq!(head.header("x-push-version"), Some("2"));
    let bad = request(
        &cluster.http(1),
        "GET",
        "/",
        &[("X-Push-Version", "banana")],
        b"",
    )
    .await
    .expect("bad pin");
    assert_eq!(bad.status, 400);
    let missing = request(
        &cluster.http(1),
        "GET",
        "/",
        &[("X-Push-Version", "9")],
        b"",
    )
    .await
    .expect("missing pin");
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("no version 9"),
        "{}",
        missing.text()
    );

    ok(&cluster.cli(&["rollback", "--to", &cluster.addr(1)]));
    for id in 1..=3 {
        wait_body(&cluster, id, "/", &format!("hello from v1 on node {id}")).await;
    }
    // The replicated counter works through any node.
    let a = get(&cluster.http(2), "/visits").await.text();
    let b = get(&cluster.http(3), "/visits").await.text();
    assert_eq!(
        (a.as_str(), b.as_str()),
        (
            "{\"visits\": 1, \"version\": 1}",
            "{\"visits\": 2, \"version\": 1}"
        )
    );
    // Unknown path: 404 naming the version; status shows what each node serves.
    let r = get(&cluster.http(3), "/nope").await;
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("no route for GET /nope in main@v1"),
        "{}",
        r.text()
    );
    for id in 1..=3 {
        let s = cluster.status(id).await.expect("status");
        assert_eq!(s.serving, vec![("main".to_string(), 1)], "node {id}");
        assert!(s.load_errors.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_only_a_helper_module_changes_the_class_that_uses_it_everywhere() {
    let cluster = Cluster::start(3).await;
    let app = cluster.dir.path().join("loader");
    write(
        &app,
        &[
            ("app.py", "import push\nfrom shapes.area import Square\n\n@push.route('GET', '/area')\ndef area():\n    return str(Square(3).area())\n"),
            ("shapes/__init__.py", ""),
            ("shapes/area.py", "from shapes import helpers\n\nclass Square:\n    def __init__(self, side):\n        self.side = side\n\n    def area(self):\n        return helpers.scale(self.side * self.side)\n"),
            ("shapes/helpers.py", "def scale(x):\n    return x\n"),
        ],
    );
    let dir = app.to_str().expect("utf8");
    ok(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(1)]));
    for id in 1..=3 {
        wait_body(&cluster, id, "/area", "9").await;
    }
    write(
        &app,
        &[("shapes/helpers.py", "def scale(x):\n    return x * 100\n")],
    );
    let out = ok(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(2)]));
    assert!(out.contains("1 uploaded"), "{out}");
    for id in 1..=3 {
        wait_body(&cluster, id, "/area", "900").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_and_import_errors_are_rejected_with_file_and_line_and_head_stays() {
    let cluster = Cluster::start(3).await;
    let app = cluster.dir.path().join("gate");
    write(&app, &[("app.py", "import push\nfrom lib import util\n\n@push.route('GET', '/')\ndef index():\n    return util.word()\n"), ("lib/util.py", "def word():\n    return 'good'\n")]);
    let dir = app.to_str().expect("utf8");
    ok(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(1)]));
    wait_body(&cluster, 2, "/", "good").await;

    write(
        &app,
        &[("lib/util.py", "def word():\n    return 'bad' +\n")],
    );
    let err = fails(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(2)]));
    assert!(
        err.contains("main@v2/lib/util.py, line 2") && err.contains("SyntaxError"),
        "{err}"
    );
    assert!(err.contains("HEAD unchanged"), "{err}");

    write(
        &app,
        &[(
            "lib/util.py",
            "import no_such_module_here\n\ndef word():\n    return 'bad'\n",
        )],
    );
    let err = fails(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(3)]));
    assert!(
        err.contains("ModuleNotFoundError") && err.contains("no_such_module_here"),
        "{err}"
    );
    assert!(err.contains("main@v2/lib/util.py, line 1"), "{err}");

    write(
        &app,
        &[(
            "lib/util.py",
            "def word():\n    return 1 / 0\n\nVALUE = word()\n",
        )],
    );
    let err = fails(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(3)]));
    assert!(
        err.contains("ZeroDivisionError") && err.contains("main@v2/lib/util.py, line 2"),
        "{err}"
    );

    let versions = ok(&cluster.cli(&["versions", "--to", &cluster.addr(1)]));
    assert_eq!(
        versions.lines().count(),
        1,
        "a rejected deploy recorded a version: {versions}"
    );
    for id in 1..=3 {
        assert_eq!(get(&cluster.http(id), "/").await.text(), "good");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_raising_unicode_large_bodies_requests_and_plain_data() {
    let cluster = Cluster::start(1).await;
    let app = cluster.dir.path().join("misc");
    write(
        &app,
        &[(
            "app.py",
            r#"import push

@push.route("GET", "/boom")
def boom():
    raise RuntimeError("kaboom in the handler")

@push.route("/ok")
def fine():
    return "fine"

@push.route("GET", "/unicode")
def uni():
    return "héllo wörld ✓ 日本語 🚀"

@push.route("GET", "/big")
def big():
    return b"x" * 1_000_000

@push.route("POST", "/echo")
def echo(request):
    return (201, {"method": request.method, "json": request.json(), "q": request.query}, {"x-echo": "yes"})

@push.route("GET", "/store")
def store():
    try:
        push.kv("t")["k"] = object()
    except TypeError as e:
        return str(e)
    return "stored?!"

@push.route("GET", "/kv")
def kv():
    d = push.kv("t")
    d["n"] = {"list": [1, 2.5, None, True], "bytes": b"\x00\x01"}
    return repr(d["n"]) + " " + repr(d.get("absent", "default")) + " " + repr("n" in d)
"#,
        )],
    );
    ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    wait_body(&cluster, 1, "/ok", "fine").await;
    let http = cluster.http(1);

    let r = get(&http, "/boom").await;
    assert_eq!(r.status, 500);
    assert!(
        !r.text().contains("kaboom"),
        "the traceback leaked into the response: {}",
        r.text()
    );
    assert_eq!(get(&http, "/ok").await.text(), "fine");
    // A route given only a path is a GET route, as in Flask.
    let r = request(&http, "POST", "/ok", &[], b"").await.expect("post");
    assert_eq!(r.status, 405);
    let log = std::fs::read_to_string(cluster.data_dir(1).join("node.log")).expect("log");
    assert!(
        log.contains("kaboom in the handler") && log.contains("main@v1/app.py\", line 5"),
        "traceback not in the node log"
    );

    let r = get(&http, "/unicode").await;
    assert_eq!(r.text(), "héllo wörld ✓ 日本語 🚀");
    assert!(r.header("content-type").unwrap_or("").contains("utf-8"));
    let r = get(&http, "/big").await;
    assert_eq!(r.body.len(), 1_000_000);
    assert!(r.body.iter().all(|b| *b == b'x'));

    let r = request(
        &http,
        "POST",
        "/echo?a=1&b=two%20words",
        &[("content-type", "application/json")],
        br#"{"k": [1, 2]}"#,
    )
    .await
    .expect("post");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-echo"), Some("yes"));
    assert_eq!(
        r.text(),
        r#"{"method": "POST", "json": {"k": [1, 2]}, "q": {"a": "1", "b": "two words"}}"#
    );
    let r = request(&http, "GET", "/echo", &[], b"").await.expect("get");
    assert_eq!(r.status, 405);

    let r = get(&http, "/store").await;
    assert!(r.text().contains("cannot store a object"), "{}", r.text());
    let r = get(&http, "/kv").await;
    assert_eq!(
        r.text(),
        "{'list': [1, 2.5, None, True], 'bytes': b'\\x00\\x01'} 'default' True"
    );
    let out = ok(&cluster.cli(&["kv", "get", "t", "n", "--to", &cluster.addr(1)]));
    assert_eq!(
        out.trim(),
        "{'list': [1, 2.5, None, True], 'bytes': b'\\x00\\x01'}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_storm_during_deploys_and_rollbacks_sees_no_errors() {
    let cluster = Cluster::start(3).await;
    let v1 = repo("examples/hello-web");
    let v2 = repo("examples/hello-web-v2");
    ok(&cluster.cli(&["deploy", &v1, "--to", &cluster.addr(1)]));
    for id in 1..=3 {
        wait_body(&cluster, id, "/", "hello from v1").await;
    }
    let stop = Instant::now() + Duration::from_secs(4);
    let mut clients = Vec::new();
    for c in 0..6u64 {
        let http = cluster.http(c % 3 + 1);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut seen_v2) = (0u32, Vec::new(), false);
            while Instant::now() < stop && ok < 5_000 {
                match request(&http, "GET", "/", &[], b"").await {
                    Ok(r) if r.status == 200 => {
                        let text = r.text();
                        seen_v2 |= text.contains("HELLO FROM V2");
                        if !(text.contains("hello from v1") || text.contains("HELLO FROM V2")) {
                            errors.push(text);
                        }
                        ok += 1;
                    }
                    Ok(r) => errors.push(format!("{} {}", r.status, r.text())),
                    Err(e) => errors.push(e),
                }
            }
            (ok, errors, seen_v2)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(&cluster.cli(&["deploy", &v2, "--to", &cluster.addr(2)]));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ok(&cluster.cli(&["rollback", "--to", &cluster.addr(3)]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(&cluster.cli(&["rollback", "2", "--to", &cluster.addr(1)]));
    let mut total = 0;
    let mut saw_v2 = false;
    for c in clients {
        let (n, errors, seen) = c.await.expect("client");
        assert!(
            errors.is_empty(),
            "requests failed during the swap: {:?}",
            &errors[..errors.len().min(5)]
        );
        total += n;
        saw_v2 |= seen;
    }
    assert!(total > 100, "too few requests: {total}");
    assert!(saw_v2, "no request saw v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_load_on_one_node_is_reported_and_that_node_keeps_the_old_one() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let app = cluster.dir.path().join("picky");
    write(
        &app,
        &[(
            "app.py",
            "import push\n\n@push.route('GET', '/')\ndef index():\n    return 'v1'\n",
        )],
    );
    let dir = app.to_str().expect("utf8");
    ok(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(leader)]));
    for id in 1..=3 {
        wait_body(&cluster, id, "/", "v1").await;
    }
    // Passes the gate (run on the leader) but raises on one follower.
    let text = format!("import push\n\nif push.node.id == {victim}:\n    raise RuntimeError('not on this node')\n\n@push.route('GET', '/')\ndef index():\n    return 'v2'\n");
    write(&app, &[("app.py", &text)]);
    ok(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(leader)]));
    for id in (1..=3).filter(|id| *id != victim) {
        wait_body(&cluster, id, "/", "v2").await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = cluster.status(victim).await.expect("status");
        if !s.load_errors.is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "no load error reported: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.serving, vec![("main".to_string(), 1)]);
    assert!(
        status.load_errors[0].2.contains("not on this node"),
        "{:?}",
        status.load_errors
    );
    assert_eq!(get(&cluster.http(victim), "/").await.text(), "v1");
    let table = ok(&cluster.cli(&["status", &cluster.addr(1)]));
    assert!(
        table.contains("main@v2 (serving v1)") && table.contains("failed to load"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_modules_first_imported_by_a_handler_are_found_and_replaced_by_the_next_version() {
    let cluster = Cluster::start_with(1, &["--py-workers", "1"]).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let app = tmp.path().join("lazy");
    let handler = r#"
import push

@push.route("GET", "/lazy")
def lazy():
    import data
    from pkg.deep import word
    return f"{data.VALUE} {word()}"
"#;
    write(
        &app,
        &[
            ("app.py", handler),
            ("data.py", "VALUE = 'one'\n"),
            ("pkg/deep.py", "def word():\n    return 'first'\n"),
        ],
    );
    let dir = app.to_str().expect("utf8");
    ok(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(1)]));
    wait_body(&cluster, 1, "/lazy", "one first").await;
    // The next version's modules replace those imported at request time.
    write(
        &app,
        &[
            ("data.py", "VALUE = 'two'\n"),
            ("pkg/deep.py", "def word():\n    return 'second'\n"),
        ],
    );
    ok(&cluster.cli(&["deploy", dir, "--to", &cluster.addr(1)]));
    wait_body(&cluster, 1, "/lazy", "two second").await;
}

/// A node loads a version into its workers side by side, so one may serve it while another is
/// still importing: requests go to the workers holding it, and one that reaches a worker
/// still importing the app's first version waits for that load — none gets "503 no version
/// is running".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_worker_still_importing_the_first_version_waits_for_it() {
    let cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    let counter = cluster.dir.path().join("imports");
    let counter = counter.to_str().expect("utf8");
    // Imports are counted: the deploy gate's is the first, the two workers' the second and
    // third (O_APPEND makes each count its own); the third takes 3 s.
    let app_py = format!(
        "import os, time\nimport push\n\n\
         fd = os.open({counter:?}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n\
         os.write(fd, b'x')\n\
         if os.lseek(fd, 0, os.SEEK_CUR) == 3:\n    time.sleep(3)\n\
         os.close(fd)\n\n\
         @push.route('GET', '/')\ndef index():\n    return 'served by %d' % os.getpid()\n"
    );
    cluster.deploy_app("slow-import", &app_py, 1, "one worker imports slowly");
    wait_body(&cluster, 1, "/", "served by").await;
    let http = cluster.http(1);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let http = http.clone();
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..3 {
                let r = get(&http, "/").await;
                answers.push((r.status, r.text()));
            }
            answers
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for c in clients {
        for (status, text) in c.await.expect("client") {
            assert_eq!(
                status, 200,
                "a request failed while a worker imported: {text}"
            );
            pids.insert(text);
        }
    }
    // Requests keep coming (each must succeed) until the second worker has imported (the
    // slow, third import: it may start only after the first requests were served) and
    // serves too.
    let imports = || {
        std::fs::read(cluster.dir.path().join("imports"))
            .map(|b| b.len())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.len() < 2 || imports() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {pids:?} ever served, after {} imports (the gate's and two workers' expected)",
            imports()
        );
        let r = get(&http, "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        pids.insert(r.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(imports(), 3, "the gate's and two workers' imports, no more");
}
