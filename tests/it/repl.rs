//! The terminal REPL driven through a real pseudo-terminal (tmux): multi-line input, Tab
//! completion from the live node, Ctrl-C interrupting a remote loop, `:on all`, `:use` after
//! the current node is killed, and piped stdin as a script runner.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::cluster::push_bin;
use crate::support::tmux::Tmux;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(15);

fn repl_command(cluster: &Cluster, id: u64) -> String {
    format!(
        "PUSH_HISTORY={} {} repl {} --token-file {}",
        cluster.dir.path().join("history").display(),
        push_bin(),
        cluster.addr(id),
        cluster.token_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_completing_interrupting_and_moving_between_nodes() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let first = (1..=3).find(|id| *id != leader).expect("a follower");
    let term = Tmux::start(&repl_command(&cluster, first));
    // The session is on one of the node's workers (`/w1`, `/w2`): the prompt names it.
    term.wait_for(&format!("node{first}/w"), WAIT);
    term.wait_for("(follower) >>>", WAIT);

    // A multi-line def: the node says when the block is complete.
    term.line("def square(x):");
    term.wait_for("\n...", WAIT);
    term.line("    return x * x");
    term.key("Enter");
    term.line("square(12)");
    term.wait_for("144", WAIT);

    // Tab completion from the live object.
    term.type_text("push.kv(\"x\").");
    term.key("Tab");
    let screen = term.wait_for("delete", WAIT);
    assert!(
        screen.contains("cas") && screen.contains("keys"),
        "{screen}"
    );
    // Ctrl-C while idle clears the line.
    term.key("C-c");
    term.wait_for_n(">>>", 3, WAIT);

    // Ctrl-C stops a remote infinite loop: wait until it runs (it prints a word the typed
    // line does not contain), and afterwards wait for a value that is not the typed text.
    term.line(r#"exec("print('loop' + 'ing')\nwhile True: pass")"#);
    term.wait_for("looping", WAIT);
    term.key("C-c");
    term.wait_for("KeyboardInterrupt", WAIT);
    term.line("'still' + ' alive'");
    term.wait_for("'still alive'", WAIT);

    // Errors come back with their traceback.
    term.line("1 / 0");
    term.wait_for("ZeroDivisionError: division by zero", WAIT);

    // Everywhere at once.
    term.line(":on all push.node.id * 100");
    let screen = term.wait_for("node 3   300", WAIT);
    assert!(
        screen.contains("node 1   100") && screen.contains("node 2   200"),
        "{screen}"
    );

    // An unknown meta command lists the real ones.
    term.line(":frobnicate");
    term.wait_for(":reconnect", WAIT);

    // Kill the node the REPL is on: a clear message, then `:use` another without restarting.
    cluster.kill(first);
    term.line("1 + 1");
    term.wait_for("`:use ID` to pick another node", WAIT);
    let other = (1..=3).find(|id| *id != first).expect("another node");
    term.line(&format!(":use {other}"));
    term.wait_for(&format!("now on node {other}"), WAIT);
    term.line("push.node.id + 1000");
    term.wait_for(&format!("{}", other + 1000), WAIT);

    term.key("C-d");
    let deadline = std::time::Instant::now() + WAIT;
    while !term.exited() {
        assert!(
            std::time::Instant::now() < deadline,
            "Ctrl-D did not end the REPL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `push repl` on node 1 with the cluster's token file, every stdio piped.
pub fn piped_repl(cluster: &Cluster) -> Command {
    let mut command = Command::new(push_bin());
    command
        .args(["repl", &cluster.addr(1), "--token-file"])
        .arg(&cluster.token_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub fn run_script(cluster: &Cluster, script: &str) -> (bool, String, String) {
    let mut child = piped_repl(cluster).spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stdin_runs_as_a_script_and_stops_at_the_first_error() {
    let cluster = Cluster::start(1).await;
    let (ok, out, err) = run_script(
        &cluster,
        "total = 0\nfor i in range(4):\n    total += i\n\nprint('total', total)\ntotal * 2\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "total 6\n12\n");
    let (ok, out, err) = run_script(
        &cluster,
        "print('before')\nraise ValueError('boom')\nprint('never')\n",
    );
    assert!(!ok);
    assert_eq!(out, "before\n");
    assert!(err.contains("ValueError: boom"), "{err}");
    // A triple-quoted string whose lines start at column 0 is one statement, as Python says.
    let (ok, out, err) = run_script(
        &cluster,
        "doc = \"\"\"first\nsecond: not a statement\n:nodes is text too\n\"\"\"\nprint(len(doc.splitlines()))\n",
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(out, "3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_shows_the_head_of_the_app_the_session_works_on() {
    let cluster = Cluster::start(1).await;
    // Another app sorts before `main` and is further ahead: the prompt must not take it.
    let bench = cluster.dir.path().join("bench-app");
    std::fs::create_dir_all(&bench).expect("dir");
    for round in ["one", "two"] {
        std::fs::write(bench.join("app.py"), format!("ROUND = {round:?}\n")).expect("write");
        crate::support::cluster::ok(&cluster.cli(&[
            "deploy",
            bench.to_str().expect("utf8"),
            "--app",
            "bench",
            "--to",
            &cluster.addr(1),
        ]));
    }
    cluster.deploy_app("main-app", "import push\n", 1, "v1");
    let term = Tmux::start(&repl_command(&cluster, 1));
    let screen = term.wait_for("(leader)@v1 >>>", WAIT);
    assert!(!screen.contains("@v2"), "{screen}");
    term.line(":app bench");
    term.wait_for("(leader) bench@v2 >>>", WAIT);
    term.line(":versions");
    term.wait_for("* v2", WAIT);
    term.line(":app");
    term.wait_for("working on app main", WAIT);
    term.wait_for_n("(leader)@v1 >>>", 2, WAIT);
}
