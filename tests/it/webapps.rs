//! Web apps as Python developers write them, on real 3-node clusters with real clients:
//! `@push.route` path parameters, methods, 404/405 and streamed answers; files beside the
//! code; Flask (WSGI) and FastAPI (ASGI) apps run unchanged, with streamed bodies in and out,
//! Server-Sent Events read by curl, client disconnects reaching the app; the HTTP front's
//! header and body limits; a `push.ron` naming a bad callable refused at deploy.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use push_protocol::{ReadMode, Value};

use crate::support::cluster::{fails, get as kv_get, ok, set as kv_set};
use crate::support::http::request;
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

fn deploy(cluster: &Cluster, dir: &Path, app: &str) -> String {
    ok(&cluster.cli(&[
        "deploy",
        dir.to_str().expect("utf8"),
        "--app",
        app,
        "--to",
        &cluster.addr(1),
    ]))
}

/// Polls `GET path` of `app` on node `id` until it answers 200 with `want` in its body.
async fn wait_body(cluster: &Cluster, id: u64, app: &str, path: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = request(&cluster.http(id), "GET", path, &[("X-Push-App", app)], b"").await;
        if let Ok(r) = &r {
            if r.status == 200 && r.text().contains(want) {
                return r.text();
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never served {want:?} at {path}; last: {r:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until kv `map`/`key` of app `app` holds a value on node 1, and returns it.
async fn wait_kv(cluster: &Cluster, app: &str, map: &str, key: &str) -> Value {
    let client = cluster.client(1).await;
    let name = push_protocol::realm::qualify(app, map).expect("realm name");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = kv_get(&client, &name, key, ReadMode::Linearizable).await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{app}'s {map}/{key} was never written\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP/1.1 exchange read as it arrives, over a blocking socket (one request).
struct Stream {
    reader: BufReader<std::net::TcpStream>,
    head: String,
}

impl Stream {
    fn open(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Stream {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        socket.write_all(head.as_bytes()).expect("send head");
        socket.write_all(body).expect("send body");
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        Stream { reader, head }
    }

    /// Reads until `want` has arrived; returns everything read.
    fn until(&mut self, want: &str) -> String {
        let mut got = String::new();
        while !got.contains(want) {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read body");
            assert!(n > 0, "the stream ended before {want:?}; got {got:?}");
            got.push_str(&line);
        }
        got
    }
}

const ROUTES_APP: &str = r#"
import json
from importlib import resources

import data  # the package whose files /words reads
import push

gate = push.kv("gate")


@push.route("GET", "/items/{id:int}")
def get_item(id):
    return {"id": id, "type": type(id).__name__}


@push.route("/items/{id:int}", methods=["PUT", "DELETE"])
def change_item(request, id):
    return {"method": request.method, "id": request.params["id"], "size": len(request.body)}


@push.route("GET", "/files/{name:path}")
def files(name):
    return name


@push.route("GET", "/words")
def words():
    return json.loads(resources.files("data").joinpath("words.json").read_text())


@push.route("GET", "/count")
def count():
    def chunks():
        yield "first\n"
        for _ in range(400):  # bounded: 20 s
            if gate.get("go", stale=True):
                break
            push_sleep(0.05)
        yield "second\n"

    return push.Response(chunks(), headers={"content-type": "text/plain", "x-stream": "yes"})


def push_sleep(s):
    import time
    time.sleep(s)
"#;

/// `@push.route` path parameters, methods, 404 vs 405 with `Allow`, a large body streamed
/// in, a generator answer whose first chunk arrives before the handler finishes, and a data
/// file deployed beside the code read with `importlib.resources`, on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_take_parameters_methods_and_stream() {
    let cluster = Cluster::start(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[
            ("app.py", ROUTES_APP),
            ("data/__init__.py", ""),
            ("data/words.json", "[\"push\", \"raft\"]"),
        ],
    );
    deploy(&cluster, dir.path(), "main");
    for id in 1..=3 {
        let text = wait_body(&cluster, id, "main", "/items/7", "\"id\": 7").await;
        assert_eq!(text, r#"{"id": 7, "type": "int"}"#);
        let http = cluster.http(id);
        let r = request(&http, "PUT", "/items/9", &[], b"abc")
            .await
            .expect("put");
        assert_eq!(r.text(), r#"{"method": "PUT", "id": 9, "size": 3}"#);
        let r = request(&http, "POST", "/items/9", &[], b"")
            .await
            .expect("post");
        assert_eq!(r.status, 405, "{}", r.text());
        let allow = r.header("allow").expect("an Allow header");
        for m in ["GET", "PUT", "DELETE", "HEAD"] {
            assert!(allow.contains(m), "{allow}");
        }
        let r = request(&http, "GET", "/items/seven", &[], b"")
            .await
            .expect("get");
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(r.header("allow").is_none());
        let r = request(&http, "GET", "/files/a%20b/c.txt", &[], b"")
            .await
            .expect("get");
        assert_eq!(r.text(), "a b/c.txt");
        let r = request(&http, "GET", "/words", &[], b"")
            .await
            .expect("words");
        assert_eq!(r.text(), r#"["push", "raft"]"#);
    }
    // A body larger than the part sent with the request streams in after it.
    let big = vec![b'x'; 1 << 20];
    let r = request(&cluster.http(2), "DELETE", "/items/1", &[], &big)
        .await
        .expect("big body");
    assert_eq!(
        r.text(),
        r#"{"method": "DELETE", "id": 1, "size": 1048576}"#
    );
    // The first chunk arrives while the handler waits for the test's go.
    let mut stream = Stream::open(&cluster.http(3), "GET", "/count", &[], b"");
    assert!(stream.head.starts_with("HTTP/1.1 200"), "{}", stream.head);
    assert!(
        stream
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        stream.head
    );
    assert!(stream.head.contains("x-stream: yes"), "{}", stream.head);
    stream.until("first");
    let client = cluster.client(1).await;
    kv_set(&client, "gate", "go", Value::Bool(true)).await;
    stream.until("second");
}

const FLASK_APP: &str = r#"
import time

import push
from flask import Flask, Response, render_template, request

app = Flask(__name__)
gate = push.kv("gate")
seen = push.kv("seen")


@app.get("/hello/<name>")
def hello(name):
    return render_template("hello.html", name=name)


@app.post("/upload")
def upload():
    size = 0
    while chunk := request.stream.read(65536):
        size += len(chunk)
    return {"bytes": size}


def wait_for(key):
    for _ in range(400):  # bounded: 20 s
        if gate.get(key, stale=True):
            return
        time.sleep(0.05)


@app.get("/events")
def events():
    def stream():
        yield "data: one\n\n"
        wait_for("two")
        yield "data: two\n\n"

    return Response(stream(), mimetype="text/event-stream")


@app.get("/forever")
def forever():
    def stream():
        try:
            for n in range(600):  # bounded: 30 s
                yield f"data: {n}\n\n"
                time.sleep(0.05)
        finally:
            seen["closed"] = True

    return Response(stream(), mimetype="text/event-stream")
"#;

/// A Flask app runs unchanged on every node: routes, a template from its folder, a body
/// streamed in, SSE whose first event curl reads before the handler finishes, and a client
/// that leaves closing the app's generator. The example app serves too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_apps_run_unchanged() {
    let cluster = Cluster::start(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[
            ("push.ron", "(wsgi: \"site:app\")"),
            ("site.py", FLASK_APP),
            ("templates/hello.html", "<p>Hello, {{ name }}!</p>"),
        ],
    );
    deploy(&cluster, dir.path(), "main");
    deploy(&cluster, Path::new(&repo("examples/flask-app")), "flask");
    for id in 1..=3 {
        wait_body(&cluster, id, "main", "/hello/Ada", "<p>Hello, Ada!</p>").await;
        let page = wait_body(&cluster, id, "flask", "/?name=Grace", "Hello, Grace!").await;
        assert!(page.contains(&format!("node {id}")), "{page}");
        let r = request(&cluster.http(id), "GET", "/nowhere", &[], b"")
            .await
            .expect("404");
        assert_eq!(r.status, 404);
    }
    let big = vec![b'y'; 3 << 20];
    let r = request(&cluster.http(2), "POST", "/upload", &[], &big)
        .await
        .expect("upload");
    assert_eq!(r.text().trim(), r#"{"bytes":3145728}"#);

    // SSE through curl: the first event is printed while the generator waits for "two".
    let mut curl = Command::new("curl")
        .args(["-sN", &format!("http://{}/events", cluster.http(3))])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut out = BufReader::new(curl.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("curl output");
    assert_eq!(line, "data: one\n");
    let client = cluster.client(1).await;
    kv_set(&client, "gate", "two", Value::Bool(true)).await;
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("rest");
    assert!(rest.contains("data: two"), "{rest}");
    assert!(curl.wait().expect("curl").success());

    // The client leaves mid-stream: the app's generator is closed (its finally runs).
    let mut stream = Stream::open(&cluster.http(1), "GET", "/forever", &[], b"");
    assert!(stream.head.contains("text/event-stream"), "{}", stream.head);
    stream.until("data: 2");
    drop(stream);
    assert_eq!(
        wait_kv(&cluster, "main", "seen", "closed").await,
        Value::Bool(true)
    );
}

const FASTAPI_APP: &str = r#"
import asyncio

import push
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from contextlib import asynccontextmanager
from sse_starlette.sse import EventSourceResponse

gate = push.kv("gate")
seen = push.kv("seen")


@asynccontextmanager
async def lifespan(app):
    app.state.started = "yes"
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request):
    return {"item_id": item_id, "started": request.app.state.started}


@app.post("/upload")
async def upload(request: Request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"bytes": size}


async def wait_for(key):
    for _ in range(400):  # bounded: 20 s
        if await asyncio.to_thread(gate.get, key, stale=True):
            return
        await asyncio.sleep(0.05)


@app.get("/events")
async def events():
    async def stream():
        yield "data: one\n\n"
        await wait_for("two")
        yield "data: two\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


@app.get("/sse")
async def sse():
    async def stream():
        yield {"data": "three"}
        yield {"event": "done", "data": "bye"}

    return EventSourceResponse(stream())


@app.get("/wait")
async def wait(request: Request):
    await asyncio.to_thread(seen.__setitem__, "waiting", True)
    for _ in range(600):  # bounded: 30 s
        if await request.is_disconnected():
            await asyncio.to_thread(seen.__setitem__, "gone", True)
            return {"gone": True}
        await asyncio.sleep(0.05)
    return {"gone": False}
"#;

/// A FastAPI app runs unchanged on every node: its lifespan ran in the worker, a body
/// streams in, SSE's first event reaches curl before the handler finishes (and
/// sse-starlette's `EventSourceResponse` streams too), and a client
/// that leaves is seen by the app as `http.disconnect`. The example app serves too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_apps_run_unchanged() {
    let cluster = Cluster::start(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[("push.ron", "(asgi: \"api:app\")"), ("api.py", FASTAPI_APP)],
    );
    deploy(&cluster, dir.path(), "main");
    deploy(&cluster, Path::new(&repo("examples/fastapi-app")), "api");
    for id in 1..=3 {
        let text = wait_body(&cluster, id, "main", "/items/5", "item_id").await;
        assert_eq!(text, r#"{"item_id":5,"started":"yes"}"#);
        let words = wait_body(&cluster, id, "api", "/words", "raft").await;
        assert!(words.contains(r#"["push","raft","python"]"#), "{words}");
        let r = request(&cluster.http(id), "GET", "/items/x", &[], b"")
            .await
            .expect("422");
        assert_eq!(r.status, 422, "{}", r.text());
    }
    let big = vec![b'z'; 2 << 20];
    let r = request(&cluster.http(3), "POST", "/upload", &[], &big)
        .await
        .expect("upload");
    assert_eq!(r.text(), r#"{"bytes":2097152}"#);

    let mut curl = Command::new("curl")
        .args(["-sN", &format!("http://{}/events", cluster.http(2))])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut out = BufReader::new(curl.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("curl output");
    assert_eq!(line, "data: one\n");
    let client = cluster.client(1).await;
    kv_set(&client, "gate", "two", Value::Bool(true)).await;
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("rest");
    assert!(rest.contains("data: two"), "{rest}");
    assert!(curl.wait().expect("curl").success());
    // sse-starlette's EventSourceResponse, as FastAPI apps use it for SSE.
    let sse = Command::new("curl")
        .args(["-sN", &format!("http://{}/sse", cluster.http(3))])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&sse.stdout);
    assert!(
        text.contains("data: three") && text.contains("event: done") && text.contains("data: bye"),
        "{text}"
    );

    // The client leaves before any answer: the app's receive() says http.disconnect.
    let stream = Stream::open_no_head(&cluster.http(1), "/wait");
    wait_kv(&cluster, "main", "seen", "waiting").await;
    drop(stream);
    assert_eq!(
        wait_kv(&cluster, "main", "seen", "gone").await,
        Value::Bool(true)
    );
}

impl Stream {
    /// Sends a GET and returns the socket without reading (the app has not answered yet).
    fn open_no_head(addr: &str, path: &str) -> std::net::TcpStream {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect");
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket.write_all(head.as_bytes()).expect("send");
        socket
    }
}

/// Header and body limits (node flags) answer 431 and 413; a `push.ron` naming a callable
/// that is not there is refused at deploy with HEAD untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_bad_web_manifests() {
    let cluster =
        Cluster::start_with(3, &["--http-max-body", "100000", "--http-max-head", "8192"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[(
            "app.py",
            "import push\n\n@push.route('POST', '/size')\ndef size(request):\n    return str(len(request.body))\n\n@push.route('GET', '/')\ndef index():\n    return 'v1'\n",
        )],
    );
    deploy(&cluster, dir.path(), "main");
    wait_body(&cluster, 1, "main", "/", "v1").await;
    let http = cluster.http(1);
    let r = request(&http, "POST", "/size", &[], &[b'a'; 100_000])
        .await
        .expect("at the limit");
    assert_eq!(r.text(), "100000");
    let r = request(&http, "POST", "/size", &[], &[b'a'; 100_001])
        .await
        .expect("413");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("100000 bytes"), "{}", r.text());
    // A chunked body (no length) is cut off once it passes the limit.
    let mut socket = std::net::TcpStream::connect(&http).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!("POST /size HTTP/1.1\r\nHost: {http}\r\nTransfer-Encoding: chunked\r\n\r\n");
    socket.write_all(head.as_bytes()).expect("head");
    let chunk = [b'b'; 30_000];
    for _ in 0..4 {
        let _ = socket.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = socket.write_all(&chunk);
        let _ = socket.write_all(b"\r\n");
    }
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let long = "x".repeat(9000);
    let r = request(&http, "GET", "/", &[("X-Long", &long)], b"")
        .await
        .expect("431");
    assert_eq!(r.status, 431);

    // A push.ron naming a missing callable, or a malformed one: refused, HEAD stays v1.
    for (ron, want) in [
        ("(wsgi: \"app:application\")", "has no 'application'"),
        ("(asgi: \"nowhere:app\")", "no module 'nowhere'"),
        ("(wsgi: \"app\")", "module:attribute"),
    ] {
        write(dir.path(), &[("push.ron", ron)]);
        let err = fails(&cluster.cli(&[
            "deploy",
            dir.path().to_str().expect("utf8"),
            "--to",
            &cluster.addr(2),
        ]));
        assert!(err.contains(want), "{err}");
    }
    // Past the per-version size limit: refused before uploading, naming the file.
    let heavy = tempfile::tempdir().expect("tempdir");
    write(heavy.path(), &[("app.py", "x = 1\n")]);
    let two_mb = "d".repeat(2_000_000);
    for i in 0..17 {
        write(heavy.path(), &[(&format!("data/part{i:02}.txt"), &two_mb)]);
    }
    let err = fails(&cluster.cli(&[
        "deploy",
        heavy.path().to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    assert!(
        err.contains("data/part16.txt") && err.contains("33554432-byte limit"),
        "{err}"
    );
    let versions = ok(&cluster.cli(&["versions", "--to", &cluster.addr(1)]));
    assert!(!versions.contains("v2"), "{versions}");
    for id in 1..=3 {
        wait_body(&cluster, id, "main", "/", "v1").await;
    }
}
