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
use crate::support::eval::{eval_streams as eval, spin_code, wait_spinning};
use crate::support::raw::{
    expect_error_and_close, expect_error_then_close, hello, request, response, session,
};
use crate::support::Cluster;

mod code;
mod wire;

use code::*;
use wire::*;

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
    /// went more than [`CANARY_GAP`] without a success.
    pub(crate) async fn assert_healthy(&self, case: &str, rounds_before: u64) {
        let deadline = Instant::now() + CANARY_GAP;
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
            log.longest_gap < CANARY_GAP,
            "{case}: the canary went {:?} without a success",
            log.longest_gap
        );
    }
}

/// The longest the canary may go without a write-then-read. The feature is that hostile
/// input never stalls consensus (a stall lasts until the attack ends, far longer); healthy
/// rounds take milliseconds, and 5 s is headroom for a loaded 2-core machine.
const CANARY_GAP: Duration = Duration::from_secs(5);

/// The attacked node still answers a Ping and an eval. The feature is that it answers at all
/// while attacked (a wedged node never does); the 5 s bound is headroom for a loaded machine.
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
    eprintln!("{case}: node {id} answered a ping in {pinged:?}, an eval in {evaluated:?}");
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
