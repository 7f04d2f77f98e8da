//! The REPL's code-store commands and session tools in a real terminal (tmux): `:deploy DIR`,
//! `:diff A B`, `:rollback`, the prompt following HEAD, `:reconnect` starting a fresh
//! session, and Ctrl-R history search; and `push up` stopped by Ctrl-D and by `:quit`.

use std::time::Duration;

use crate::support::cluster::push_bin;
use crate::support::tmux::Tmux;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_diff_rollback_reconnect_and_history_search_in_the_repl() {
    let cluster = Cluster::start(1).await;
    let app = cluster.dir.path().join("shop");
    std::fs::create_dir_all(&app).expect("dir");
    std::fs::write(app.join("app.py"), "PRICE = 1\n").expect("write");
    let term = Tmux::start(&format!(
        "PUSH_HISTORY={} {} repl {} --token-file {}",
        cluster.dir.path().join("history").display(),
        push_bin(),
        cluster.addr(1),
        cluster.token_file.display()
    ));
    term.wait_for("(leader) >>>", WAIT);

    // :deploy makes v1 and the prompt follows HEAD.
    term.line(&format!(":deploy {}", app.display()));
    term.wait_for("(leader)@v1 >>>", WAIT);
    std::fs::write(app.join("app.py"), "PRICE = 2\n").expect("write");
    term.line(&format!(":deploy {}", app.display()));
    term.wait_for("(leader)@v2 >>>", WAIT);

    // :diff shows the change between the two versions.
    term.line(":diff 1 2");
    let screen = term.wait_for("+PRICE = 2", WAIT);
    assert!(screen.contains("-PRICE = 1"), "{screen}");

    // :rollback moves HEAD back; the prompt says so.
    term.line(":rollback");
    term.wait_for("HEAD moved from v2 to v1", WAIT);
    term.wait_for("(leader)@v1 >>>", WAIT);

    // :reconnect opens a new session: names defined before are gone.
    term.line("kept = 'sess' + 'ion one'");
    term.line("kept");
    term.wait_for("'session one'", WAIT);
    term.line(":reconnect");
    term.wait_for("(new session)", WAIT);
    term.line("kept");
    term.wait_for("NameError: name 'kept' is not defined", WAIT);

    // Ctrl-R searches the history; Enter takes the match, a second Enter runs it.
    term.line("'hist' + 'ory' * 2");
    term.wait_for_n("'historyory'", 1, WAIT);
    term.line("1 + 1");
    term.wait_for("\n2\n", WAIT);
    term.key("C-r");
    term.type_text("ory' *");
    term.wait_for("(search: ory' *)", WAIT);
    term.key("Enter");
    term.key("Enter");
    term.wait_for_n("'historyory'", 2, WAIT);

    term.line(":quit");
    let deadline = std::time::Instant::now() + WAIT;
    while !term.exited() {
        assert!(
            std::time::Instant::now() < deadline,
            ":quit did not end the REPL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `push up` in a terminal, in a fresh directory, until its REPL prompt shows.
fn push_up(dir: &std::path::Path) -> Tmux {
    let term = Tmux::start(&format!(
        "cd {} && PUSH_HISTORY={} {} up --dir cluster; echo UP-EXITED status=$?; sleep 600",
        dir.display(),
        dir.join("history").display(),
        push_bin()
    ));
    term.wait_for("Push cluster is up", Duration::from_secs(90));
    term.wait_for(">>>", WAIT);
    term
}

#[test]
fn push_up_stops_on_ctrl_d_and_on_quit() {
    let dir = tempfile::tempdir().expect("dir");
    for (how, keys) in [("Ctrl-D", None), (":quit", Some(":quit"))] {
        let term = push_up(dir.path());
        match keys {
            Some(line) => term.line(line),
            None => term.key("C-d"),
        }
        let screen = term.wait_for("UP-EXITED status=0", Duration::from_secs(60));
        assert!(
            screen.contains("cluster stopped; data kept"),
            "{how} did not stop the cluster:\n{screen}"
        );
    }
}
