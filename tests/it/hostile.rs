//! One table of hostile inputs against one 3-node cluster (issue #7): bad tokens, oversized
//! frames, deep nesting, invalid UTF-8, unknown ops, evals printing 100 MB, recursion bombs,
//! deploys of 10,000 files or of binary junk, an endless loop. Each case gets a clear error,
//! and after each one a canary (kv set + linearizable get through node 1 every ~50 ms) must be
//! healthy and the attacked node must still answer a Ping and an eval quickly.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use push_protocol::frame::MAX_CLIENT_FRAME;
use push_protocol::{codec, ByteBuf, Client, ErrorCode, Op, ReadMode, Reply, Value};
use tokio::io::AsyncWriteExt;

use crate::support::cluster::push_bin;
use crate::support::eval::eval_streams as eval;
use crate::support::raw::{
    expect_error_and_close, expect_error_then_close, hello, request, response, session,
};
use crate::support::Cluster;

/// What a case may use: addresses, the token, a scratch dir, node pids.
struct Ctx {
    addrs: Vec<String>,
    https: Vec<String>,
    pids: Vec<u32>,
    token: String,
    token_file: PathBuf,
    dir: PathBuf,
}

impl Ctx {
    fn addr(&self, id: u64) -> &str {
        &self.addrs[id as usize - 1]
    }

    async fn client(&self, id: u64) -> Client {
        Client::connect(self.addr(id), &self.token)
            .await
            .expect("connect")
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(push_bin())
            .args(args)
            .arg("--token-file")
            .arg(&self.token_file)
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run push")
    }
}

type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One row of the table: a name, the node it attacks, and the attack with its expectations.
struct Case {
    name: &'static str,
    target: u64,
    run: fn(Arc<Ctx>, u64) -> CaseFuture,
}

macro_rules! case {
    ($name:literal, $target:expr, $f:ident) => {
        Case {
            name: $name,
            target: $target,
            run: |ctx, target| Box::pin($f(ctx, target)),
        }
    };
}

/// The canary's record: successful rounds, failures, and the longest gap between successes.
#[derive(Default)]
struct CanaryLog {
    failures: Vec<String>,
    longest_gap: Duration,
}

pub(crate) struct Canary {
    pub(crate) rounds: Arc<AtomicU64>,
    log: Arc<Mutex<CanaryLog>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Canary {
    /// Sets `canary/k` to 1, 2, 3... through node 1 and reads it back linearizably, every
    /// ~50 ms, for at most 3 minutes.
    pub(crate) fn start(addr: String, token: String) -> Canary {
        let rounds = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(CanaryLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, l, s) = (rounds.clone(), log.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client = Client::connect(&addr, &token)
                .await
                .expect("canary connect");
            let started = Instant::now();
            let mut last_ok = Instant::now();
            let mut i = 0i64;
            while !s.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(180) {
                i += 1;
                let round = async {
                    client
                        .call(Op::KvSet {
                            map: "canary".into(),
                            key: "k".into(),
                            value: Value::Int(i),
                        })
                        .await
                        .map_err(|e| format!("set: {e}"))?;
                    match client
                        .call(Op::KvGet {
                            map: "canary".into(),
                            key: "k".into(),
                            read: ReadMode::Linearizable,
                        })
                        .await
                    {
                        Ok(Reply::Value(Some(Value::Int(n)))) if n == i => Ok(()),
                        other => Err(format!("get after set {i}: {other:?}")),
                    }
                };
                let outcome = tokio::time::timeout(Duration::from_secs(5), round)
                    .await
                    .unwrap_or_else(|_| Err(format!("round {i} took over 5 s")));
                {
                    let mut log = l.lock().expect("canary log");
                    match outcome {
                        Ok(()) => {
                            log.longest_gap = log.longest_gap.max(last_ok.elapsed());
                            last_ok = Instant::now();
                            r.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => log.failures.push(e),
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Canary {
            rounds,
            log,
            stop,
            task,
        }
    }

    /// Panics unless the canary succeeded since `rounds_before`, never failed, and never
    /// went more than 2 s without a success.
    pub(crate) async fn assert_healthy(&self, case: &str, rounds_before: u64) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.rounds.load(Ordering::Relaxed) <= rounds_before {
            assert!(
                Instant::now() < deadline,
                "{case}: the canary made no progress"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = self.log.lock().expect("canary log");
        assert!(
            log.failures.is_empty(),
            "{case}: canary failures: {:?}",
            log.failures
        );
        assert!(
            log.longest_gap < Duration::from_secs(2),
            "{case}: the canary went {:?} without a success",
            log.longest_gap
        );
    }
}

/// The attacked node still answers a Ping and an eval, within a second each.
async fn assert_serving(ctx: &Ctx, case: &str, id: u64) {
    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let c = ctx.client(id).await;
        assert!(matches!(c.call(Op::Ping).await, Ok(Reply::Pong)));
        let pinged = started.elapsed();
        let (_, _, r) = eval(&c, None, "6 * 7").await;
        assert_eq!(r.value.as_deref(), Some("42"), "{case}: {r:?}");
        (pinged, started.elapsed())
    })
    .await;
    let (pinged, evaluated) =
        answered.unwrap_or_else(|_| panic!("{case}: node {id} did not answer within 5 s"));
    assert!(
        pinged < Duration::from_secs(1) && evaluated < Duration::from_secs(2),
        "{case}: node {id} answered slowly: ping {pinged:?}, eval {evaluated:?}"
    );
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

async fn head(client: &Client, app: &str) -> Option<u64> {
    match client.call(Op::Versions { app: app.into() }).await {
        Ok(Reply::Versions { head, .. }) => head,
        other => panic!("versions: {other:?}"),
    }
}

/// Waits (up to 5 s) until the node `client` talks to has applied HEAD `want` of `app`.
async fn wait_head(client: &Client, app: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while head(client, app).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{app} never reached HEAD v{want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stderr_of_failure(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "push unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- the cases ----

async fn wrong_token(ctx: Arc<Ctx>, id: u64) {
    let msg = expect_error_and_close(
        ctx.addr(id),
        &hello("wrong", push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    assert!(
        msg.contains("wrong or missing cluster token") && msg.contains("pass --token"),
        "{msg}"
    );
}

async fn missing_token(ctx: Arc<Ctx>, id: u64) {
    let msg = expect_error_and_close(
        ctx.addr(id),
        &hello("", push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    assert!(msg.contains("wrong or missing cluster token"), "{msg}");
}

async fn token_of_the_right_length(ctx: Arc<Ctx>, id: u64) {
    let mut forged: Vec<u8> = ctx.token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(forged.len(), ctx.token.len());
    let msg = expect_error_and_close(
        ctx.addr(id),
        &hello(&forged, push_protocol::FORMAT_VERSION),
        ErrorCode::Unauthorized,
    )
    .await;
    assert!(msg.contains("wrong or missing cluster token"), "{msg}");
}

async fn oversized_frame(ctx: Arc<Ctx>, id: u64) {
    let mut s = session(ctx.addr(id), &ctx.token).await;
    s.write_all(&(200u32 << 20).to_be_bytes())
        .await
        .expect("write");
    let msg = expect_error_then_close(&mut s, ErrorCode::TooLarge).await;
    assert!(
        msg.contains(&format!("exceeds the limit of {MAX_CLIENT_FRAME} bytes")),
        "{msg}"
    );
}

async fn frame_just_over_the_client_limit(ctx: Arc<Ctx>, id: u64) {
    let mut s = session(ctx.addr(id), &ctx.token).await;
    let size = MAX_CLIENT_FRAME as u32 + 1;
    s.write_all(&size.to_be_bytes()).await.expect("write");
    // Start sending the body too: the node must refuse on the header, not buffer 16 MiB.
    let _ = s.write_all(&vec![7u8; 64 * 1024]).await;
    let msg = expect_error_then_close(&mut s, ErrorCode::TooLarge).await;
    assert!(
        msg.contains(&format!("frame of {size} bytes exceeds the limit")),
        "{msg}"
    );
}

async fn value_nested_past_the_guard(ctx: Arc<Ctx>, id: u64) {
    let mut value = Value::None;
    for _ in 0..=push_protocol::value::MAX_DEPTH {
        value = Value::List(vec![value]);
    }
    let c = ctx.client(id).await;
    let err = c
        .call(Op::KvSet {
            map: "hostile".into(),
            key: "deep".into(),
            value,
        })
        .await
        .expect_err("too deep");
    assert_eq!(err.code(), Some(ErrorCode::UnknownOp), "{err}");
    assert!(err.to_string().contains("nested deeper than 128"), "{err}");
    // The same connection goes on working, and nothing was written.
    assert!(matches!(
        c.call(Op::KvGet {
            map: "hostile".into(),
            key: "deep".into(),
            read: ReadMode::Linearizable
        })
        .await,
        Ok(Reply::Value(None))
    ));
}

async fn invalid_utf8_in_a_string_field(ctx: Arc<Ctx>, id: u64) {
    let op = Op::KvSet {
        map: "QQQQ".into(),
        key: "k".into(),
        value: Value::Int(1),
    };
    let mut bytes = codec::encode(&op).expect("encode");
    let at = bytes
        .windows(4)
        .position(|w| w == b"QQQQ")
        .expect("the map name in the encoding");
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    let mut s = session(ctx.addr(id), &ctx.token).await;
    s.write_all(&request(1, &bytes)).await.expect("write");
    let (rid, outcome) = response(&mut s).await;
    assert_eq!(rid, 1);
    let err = outcome.expect_err("invalid UTF-8 must be refused");
    assert_eq!(err.code, ErrorCode::UnknownOp);
    assert!(
        err.message.contains("unknown or malformed request") && err.message.contains("utf-8"),
        "{}",
        err.message
    );
    s.write_all(&request(2, &codec::encode(&Op::Ping).expect("op")))
        .await
        .expect("write");
    assert!(matches!(response(&mut s).await, (2, Ok(Reply::Pong))));
}

async fn unknown_op(ctx: Arc<Ctx>, id: u64) {
    // Variant index 1000 as a LEB128 varint (postcard), far past the end of `Op`.
    let mut s = session(ctx.addr(id), &ctx.token).await;
    s.write_all(&request(5, &[0xe8, 0x07, 1, 2, 3]))
        .await
        .expect("write");
    let (rid, outcome) = response(&mut s).await;
    assert_eq!(rid, 5);
    let err = outcome.expect_err("unknown op");
    assert_eq!(err.code, ErrorCode::UnknownOp);
    assert!(
        err.message.contains("unknown or malformed request")
            && err.message.contains("different version"),
        "{}",
        err.message
    );
    s.write_all(&request(6, &codec::encode(&Op::Ping).expect("op")))
        .await
        .expect("write");
    assert!(matches!(response(&mut s).await, (6, Ok(Reply::Pong))));
}

/// Runs `code` (which prints about 100 MB) on node `id` while sampling the node's RSS.
async fn print_100_mb(ctx: &Ctx, id: u64, code: &str) {
    let pid = ctx.pids[id as usize - 1];
    let before = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let c = ctx.client(id).await;
    let started = Instant::now();
    let (out, _, r) = tokio::time::timeout(Duration::from_secs(20), eval(&c, None, code))
        .await
        .expect("the eval finished within 20 s");
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(out.len(), 1 << 20, "the first MiB is shown");
    let cut = r.truncated.expect("a cut note");
    assert!(
        cut.contains("stdout cut: 98") && cut.contains("bytes not shown after the first 1048576"),
        "{cut}"
    );
    let grew_mb = peak.load(Ordering::Relaxed).saturating_sub(before) / 1024;
    eprintln!(
        "{code:?}: {:?}, node RSS {} MB before, peak +{grew_mb} MB",
        started.elapsed(),
        before / 1024
    );
    assert!(grew_mb < 600, "the node's RSS grew by {grew_mb} MB");
}

async fn eval_prints_100_mb_at_once(ctx: Arc<Ctx>, id: u64) {
    print_100_mb(&ctx, id, "print('x' * 100_000_000)").await;
}

async fn eval_prints_100_mb_in_chunks(ctx: Arc<Ctx>, id: u64) {
    print_100_mb(&ctx, id, "for _ in range(100):\n    print('y' * 1_000_000)").await;
}

async fn recursion_bomb(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    let (_, _, r) = eval(&c, None, "def f(): return f()\nf()").await;
    let e = r.error.expect("RecursionError");
    assert_eq!(e.type_name, "RecursionError");
    assert!(
        e.formatted.contains("return f()")
            && e.formatted
                .contains("RecursionError: maximum recursion depth exceeded"),
        "{}",
        e.formatted
    );
}

async fn recursion_limit_raised_to_a_million(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    // Deep C recursion (repr of a nested list), which overflowed a 2 MiB thread stack and
    // aborted the node before the limit was capped.
    let code = "import sys\nsys.setrecursionlimit(10**6)\nx = []\nfor _ in range(200_000):\n    x = [x]\nrepr(x)";
    let (_, err, r) = eval(&c, None, code).await;
    assert!(
        err.contains("sys.setrecursionlimit(1000000) capped at 50000")
            && err.contains("make deep recursion iterative"),
        "{err}"
    );
    let e = r.error.expect("RecursionError");
    assert_eq!(e.type_name, "RecursionError", "{}", e.formatted);
    // And deep Python recursion.
    let code = "import sys\nsys.setrecursionlimit(10**6)\ndef g(n):\n    return g(n + 1) if n < 10**6 else n\ng(0)";
    let (_, _, r) = eval(&c, None, code).await;
    assert_eq!(r.error.expect("RecursionError").type_name, "RecursionError");
}

async fn deeply_nested_result(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    let (_, _, r) = eval(&c, None, "x=[]; [x := [x] for _ in range(100000)]; x").await;
    assert!(r.error.is_none(), "{r:?}");
    let value = r.value.expect("a value");
    assert!(
        value.starts_with("<repr failed: RecursionError: maximum recursion depth exceeded"),
        "{value}"
    );
    assert_eq!(r.type_name.as_deref(), Some("list"));
}

async fn deploy_of_10_000_files(ctx: Arc<Ctx>, id: u64) {
    let app = ctx.dir.join("many");
    for i in 0..10_000 {
        let pkg = app.join(format!("pkg{}", i / 500));
        if i % 500 == 0 {
            std::fs::create_dir_all(&pkg).expect("dir");
            std::fs::write(pkg.join("__init__.py"), "").expect("write");
        }
        std::fs::write(pkg.join(format!("m{i}.py")), format!("VALUE = {i}\n")).expect("write");
    }
    std::fs::write(
        app.join("app.py"),
        "import push\nfrom pkg19 import m9999\n\n@push.route('GET', '/')\ndef index():\n    return str(m9999.VALUE)\n",
    )
    .expect("write");
    let started = Instant::now();
    let out = ctx.cli(&["deploy", app.to_str().expect("utf8"), "--to", ctx.addr(id)]);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("deployed main@v1 (10021 files"), "{stdout}");
    assert!(stderr.contains("uploading 10002/10002 (100%)"), "{stderr}");
    eprintln!("deploy of 10,021 files took {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let c = ctx.client(id).await;
    wait_head(&c, "main", 1).await;
}

async fn too_many_files(ctx: Arc<Ctx>, id: u64) {
    // A hostile client skips the CLI's check: the leader refuses before proposing.
    let tree = (0..20_001)
        .map(|i| (format!("m{i}.py"), format!("{i:064x}")))
        .collect();
    let c = ctx.client(id).await;
    let err = c
        .call(Op::Commit {
            app: "toomany".into(),
            tree,
            message: String::new(),
            author: "hostile".into(),
            activate: true,
        })
        .await
        .expect_err("too many files");
    assert_eq!(err.code(), Some(ErrorCode::Invalid), "{err}");
    assert!(
        err.to_string()
            .contains("20001 files is more than the 20000 one version may hold"),
        "{err}"
    );
    assert_eq!(head(&c, "toomany").await, None);
}

/// An app dir `label` with a good `app.py` and `name` holding `bytes`.
fn junk_app(root: &Path, label: usize, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join(format!("junk-{label}"));
    let file = dir.join(name);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
    std::fs::write(dir.join("app.py"), "x = 1\n").expect("write");
    std::fs::write(file, bytes).expect("write");
    dir
}

async fn deploys_of_binary_junk(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    // A good first version, so there is a HEAD to keep.
    let good = ctx.dir.join("junk-good");
    std::fs::create_dir_all(&good).expect("dir");
    std::fs::write(good.join("app.py"), "x = 1\n").expect("write");
    let out = ctx.cli(&[
        "deploy",
        good.to_str().expect("utf8"),
        "--app",
        "junk",
        "--to",
        ctx.addr(id),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_head(&c, "junk", 1).await;

    // Random bytes (a fixed xorshift stream, so the case is the same on every run).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("random.py", random, "random.py is not UTF-8 text"),
        (
            "lib/nul.py",
            b"x = 1\0\0\0\n".to_vec(),
            "lib/nul.py contains a NUL byte at offset 5",
        ),
        (
            "latin1.py",
            b"name = 'caf\xe9'\n".to_vec(),
            "latin1.py is not UTF-8 text (invalid byte at offset 11)",
        ),
    ];
    for (i, (name, bytes, want)) in cases.iter().enumerate() {
        let dir = junk_app(&ctx.dir, i, name, bytes);
        let err = stderr_of_failure(&ctx.cli(&[
            "deploy",
            dir.to_str().expect("utf8"),
            "--app",
            "junk",
            "--to",
            ctx.addr(id),
        ]));
        assert!(
            err.contains(&format!("not deployed: {want}")) && err.contains("binary file"),
            "{name}: {err}"
        );
    }
    // A hostile client skips the CLI: the leader's deploy gate refuses by name too.
    let blob = b"import os\0\n".to_vec();
    let hash = push::model::code_store::blob_hash(&blob);
    c.call(Op::PutBlobs {
        blobs: vec![ByteBuf::from(blob)],
    })
    .await
    .expect("put");
    let err = c
        .call(Op::Commit {
            app: "junk".into(),
            tree: [("app.py".to_string(), hash)].into_iter().collect(),
            message: String::new(),
            author: "hostile".into(),
            activate: true,
        })
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("deploy rejected: app.py contains a NUL byte at offset 9"),
        "{err}"
    );
    assert_eq!(head(&c, "junk").await, Some(1), "HEAD unchanged");
}

async fn endless_loop_interrupted(ctx: Arc<Ctx>, id: u64) {
    let c = ctx.client(id).await;
    let s = match c.call(Op::SessionOpen).await.expect("open") {
        Reply::Session { id } => id,
        other => panic!("{other:?}"),
    };
    let looping = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let c = ctx.client(id).await;
            eval(&c, Some(s), "n = 0\nwhile True:\n    n += 1").await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    assert!(matches!(
        c.call(Op::Interrupt { session: s }).await,
        Ok(Reply::Interrupted { running: true })
    ));
    let (_, _, r) = tokio::time::timeout(Duration::from_secs(5), looping)
        .await
        .expect("the loop stopped within 5 s")
        .expect("task");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let e = r.error.expect("interrupted");
    assert_eq!(e.type_name, "KeyboardInterrupt");
    let (_, _, r) = eval(&c, Some(s), "n > 0").await;
    assert_eq!(r.value.as_deref(), Some("True"));
}

fn table() -> Vec<Case> {
    vec![
        case!("wrong token", 2, wrong_token),
        case!("missing token", 3, missing_token),
        case!(
            "token of the right length, wrong",
            2,
            token_of_the_right_length
        ),
        case!("oversized frame", 3, oversized_frame),
        case!(
            "frame just over the client limit",
            2,
            frame_just_over_the_client_limit
        ),
        case!(
            "value nested past the guard",
            3,
            value_nested_past_the_guard
        ),
        case!(
            "invalid UTF-8 in a string field",
            2,
            invalid_utf8_in_a_string_field
        ),
        case!("unknown op", 3, unknown_op),
        case!("eval prints 100 MB at once", 2, eval_prints_100_mb_at_once),
        case!(
            "eval prints 100 MB in 1 MB chunks",
            3,
            eval_prints_100_mb_in_chunks
        ),
        case!("recursion bomb", 2, recursion_bomb),
        case!(
            "recursion limit raised to a million",
            3,
            recursion_limit_raised_to_a_million
        ),
        case!("deeply nested result", 3, deeply_nested_result),
        case!("deploy of 10,000 files", 2, deploy_of_10_000_files),
        case!("a version of too many files", 3, too_many_files),
        case!("deploys of binary junk", 2, deploys_of_binary_junk),
        case!("endless loop, interrupted", 3, endless_loop_interrupted),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_clear_errors_while_the_cluster_serves() {
    let cluster = Cluster::start(3).await;
    let ctx = Arc::new(Ctx {
        addrs: (1..=3).map(|id| cluster.addr(id)).collect(),
        https: (1..=3).map(|id| cluster.http(id)).collect(),
        pids: (1..=3)
            .map(|id| cluster.pid(id).expect("running"))
            .collect(),
        token: cluster.token.clone(),
        token_file: cluster.token_file.clone(),
        dir: cluster.dir.path().to_path_buf(),
    });
    let canary = Canary::start(cluster.addr(1), cluster.token.clone());
    canary.assert_healthy("start", 0).await;
    let started = Instant::now();
    for case in table() {
        let before = canary.rounds.load(Ordering::Relaxed);
        let t = Instant::now();
        (case.run)(ctx.clone(), case.target).await;
        assert_serving(&ctx, case.name, case.target).await;
        canary.assert_healthy(case.name, before).await;
        eprintln!(
            "case {:?} on node {}: {:?}",
            case.name,
            case.target,
            t.elapsed()
        );
    }
    // The 10,000-file app serves on every node.
    for http in &ctx.https {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = crate::support::http::get(http, "/").await;
            if r.text() == "9999" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{http} never served the big app: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    canary.stop.store(true, Ordering::Relaxed);
    canary.task.await.expect("canary");
    let log = canary.log.lock().expect("log");
    eprintln!(
        "all cases in {:?}; canary: {} rounds, longest gap {:?}",
        started.elapsed(),
        canary.rounds.load(Ordering::Relaxed),
        log.longest_gap
    );
}
