//! `push up` as a newcomer runs it outside a checkout: the first run forms a cluster (saying
//! so when port 7001 is busy, and not advertising an example it did not deploy), a second
//! `push up` in the same directory says the cluster runs instead of starting nodes that cannot
//! bind, SIGINT stops the cluster, and a third run resumes it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::cluster::push_bin;

const WAIT: Duration = Duration::from_secs(60);

/// A `push up` without a terminal, its stdout and stderr lines merged into one channel.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(dir: &std::path::Path) -> Up {
        let mut child = Command::new(push_bin())
            .args(["up", "--dir", "cluster"])
            .current_dir(dir)
            .env_remove("PUSH_TOKEN")
            .env_remove("PUSH_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn push up");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for reader in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as Box<dyn std::io::Read + Send>,
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Up {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text`; returns every line seen so far.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("`push up` never said {text:?}:\n{}", self.seen.join("\n")),
            }
        }
        self.seen.join("\n")
    }

    fn interrupt(&self) {
        // SAFETY: signalling a child this test spawned and still owns.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "push up did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.interrupt();
            let _ = self.wait_exit();
        }
    }
}

#[test]
fn first_run_second_instance_sigint_and_resume() {
    let dir = tempfile::tempdir().expect("dir");
    // Port 7001 is busy (held here, or by anything else on the machine): the run says so.
    let _held = std::net::TcpListener::bind("127.0.0.1:7001");
    let mut first = Up::start(dir.path());
    let said = first.wait_for("Push cluster is up");
    assert!(
        said.contains("busy, so the node ports are"),
        "the port fallback was silent:\n{said}"
    );
    assert!(
        !said.lines().any(|l| l.contains("/3 nodes")
            && l.trim()
                .split('/')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                > Some(3)),
        "{said}"
    );
    assert!(
        !said.contains("hello-web"),
        "outside a checkout nothing is deployed, so no example is advertised:\n{said}"
    );

    // A second `push up` in the same directory finds the running cluster.
    let second = Command::new(push_bin())
        .args(["up", "--dir", "cluster"])
        .current_dir(dir.path())
        .env_remove("PUSH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("second push up");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(
        err.contains("is already running") && err.contains("push repl"),
        "{err}"
    );
    assert!(!err.contains("nodes in the cluster"), "{err}");

    // SIGINT (no terminal) stops the cluster and keeps the data.
    first.interrupt();
    first.wait_for("cluster stopped; data kept");
    first.wait_exit();
    drop(first);

    // The next run resumes the recorded cluster.
    let mut again = Up::start(dir.path());
    let said = again.wait_for("Push cluster is up");
    assert!(
        said.contains("restarting the cluster recorded in"),
        "{said}"
    );
}
