//! Call tracing, black-box: `:trace app.twice --max 3` in a real `push repl` process while
//! requests call a route whose handler calls `twice`: three call lines arrive with their
//! arguments and return value (or exception), then the trace stops by itself and says why, and
//! the original function is back; a `--secs 1` trace with no calls ends on its own. Every wait
//! is bounded; calls are made only once the trace is confirmed installed on the worker.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::cluster::ok;
use crate::support::http::{get, wait_get};
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(30);

const APP: &str = r#"import push

def twice(n):
    if n < 0:
        raise ValueError(f"negative: {n}")
    return n * 2

@push.route("GET", "/twice/{n:int}")
def twice_route(n):
    return str(twice(n))
"#;

/// A `push repl` process running `script` (piped stdin is read whole, then run), whose
/// output lines arrive on a channel as it prints them; killed when dropped, so a failing test
/// leaves no process behind.
struct Repl {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Repl {
    fn start(cluster: &Cluster, script: &str) -> Repl {
        let mut child = crate::repl::piped_repl(cluster)
            .spawn()
            .expect("spawn push repl");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (prefix, pipe) in [
            ("", Box::new(stdout) as Box<dyn std::io::Read + Send>),
            ("stderr: ", Box::new(stderr)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(format!("{prefix}{line}")).is_err() {
                        break;
                    }
                }
            });
        }
        // Dropping stdin closes it: the script is all there is.
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write the script");
        Repl {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next output line that satisfies `want`, waiting at most `within`.
    fn wait_line(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no expected line from the repl within {within:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `twice` on the node's worker is the trace's wrapper (`--py-workers 1`: the eval
/// runs in the process that serves the route).
fn traced(cluster: &Cluster) -> bool {
    let out = ok(&cluster.cli(&[
        "eval",
        &cluster.addr(1),
        "--module",
        "app",
        "hasattr(twice, '__push_traced__')",
    ]));
    out.trim() == "True"
}

fn wait_traced(cluster: &Cluster, want: bool, repl: &Repl) {
    let deadline = Instant::now() + WAIT;
    while traced(cluster) != want {
        assert!(
            Instant::now() < deadline,
            "twice never became {}traced; the repl printed:\n{}\n{}",
            if want { "" } else { "un" },
            repl.seen.join("\n"),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_prints_calls_then_stops_by_itself() {
    let cluster = Cluster::start_with(1, &["--py-workers", "1"]).await;
    cluster.deploy_app("trace", APP, 1, "twice");
    let r = wait_get(&cluster.http(1), "/twice/1", WAIT, |r| r.status == 200)
        .await
        .expect("the app serves");
    assert_eq!(r.text(), "2");
    assert!(!traced(&cluster), "nothing is traced yet");

    let mut repl = Repl::start(&cluster, ":trace app.twice --max 3\n");
    repl.wait_line(WAIT, |l| l.starts_with("tracing app.twice on this node"));
    wait_traced(&cluster, true, &repl);

    // Three calls, one raising: three lines with arguments and outcome, in order.
    assert_eq!(get(&cluster.http(1), "/twice/4").await.text(), "8");
    assert_eq!(get(&cluster.http(1), "/twice/-5").await.status, 500);
    assert_eq!(get(&cluster.http(1), "/twice/7").await.text(), "14");
    let is_call = |l: &str| l.contains("app.twice(");
    let first = repl.wait_line(WAIT, is_call);
    let second = repl.wait_line(WAIT, is_call);
    let third = repl.wait_line(WAIT, is_call);
    assert!(
        first.contains("node 1") && first.contains("app.twice(4) -> 8 in "),
        "{first}"
    );
    assert!(
        second.contains("app.twice(-5) raised ValueError: negative: -5 in "),
        "{second}"
    );
    assert!(third.contains("app.twice(7) -> 14 in "), "{third}");
    let ended = repl.wait_line(WAIT, |l| l.starts_with("trace ended"));
    assert_eq!(ended, "trace ended: 3 call(s) shown; 3 events printed");
    // The original is back: a later call is not traced.
    wait_traced(&cluster, false, &repl);
    assert_eq!(get(&cluster.http(1), "/twice/9").await.text(), "18");
    let calls = repl.seen.iter().filter(|l| is_call(l)).count();
    assert_eq!(calls, 3, "only the three calls: {:?}", repl.seen);
    drop(repl);

    // A trace with no calls ends by itself after its seconds; the REPL then takes input.
    let started = Instant::now();
    let mut repl = Repl::start(&cluster, ":trace app.twice --secs 1\n21 * 2\n");
    repl.wait_line(WAIT, |l| l.starts_with("tracing app.twice"));
    let ended = repl.wait_line(WAIT, |l| l.starts_with("trace ended"));
    assert_eq!(ended, "trace ended: 0 call(s) shown; 1 s passed");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it ran its second"
    );
    repl.wait_line(WAIT, |l| l == "42");
}
