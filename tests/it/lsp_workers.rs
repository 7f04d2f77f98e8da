//! `push lsp` and the worker behind its session: an eval stuck in C code is interrupted by
//! `push.interrupt`, the editor is told when it has not stopped, and a second `push.interrupt`
//! restarts that worker and says the session's names are lost — as Ctrl-C does in the REPL.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::lsp::LspProc;
use crate::support::Cluster;

const WAIT: Duration = Duration::from_secs(30);

/// An eval stuck in C (`time.sleep`) that touches `marker` first. The test interrupts only
/// once the marker exists; an interrupt that still lands in Python just before the sleep (a
/// loaded machine) is swallowed, so the eval is stuck in C either way.
fn stuck(marker: &std::path::Path) -> String {
    format!(
        "import pathlib, time\nwhile True:\n    try:\n        pathlib.Path({:?}).touch()\n        time.sleep(60)\n        break\n    except KeyboardInterrupt:\n        pass\n",
        marker.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eval_stuck_in_c_is_restarted_by_a_second_push_interrupt_which_says_names_are_lost() {
    let cluster = Cluster::start_with(1, &["--py-workers", "2"]).await;
    let dir = tempfile::tempdir().expect("temp");
    let mut lsp = LspProc::connected(&cluster, dir.path());
    let file = format!("file://{}", dir.path().join("scratch.py").display());

    let r = lsp
        .command("push.eval", json!({"uri": file, "code": "x = 41"}), WAIT)
        .expect("define x");
    assert_eq!(r["ok"], json!(true), "{r}");
    let marker = dir.path().join("sleeping");
    let stuck = lsp.send_request(
        "workspace/executeCommand",
        json!({"command": "push.eval", "arguments": [{"uri": file, "code": stuck(&marker)}]}),
    );

    // The first interrupt reaches the running eval, once it is about to sleep.
    let deadline = Instant::now() + WAIT;
    cluster
        .wait_for_marker(&marker, deadline, "the eval never ran")
        .await;
    loop {
        let r = lsp
            .command("push.interrupt", json!({}), WAIT)
            .expect("interrupt");
        if r["ok"] == true {
            assert_eq!(r["restarted"], json!(false), "{r}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the eval never ran\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // time.sleep in C does not see it: 2 s later the editor is told, while the eval still runs.
    let notice = lsp.wait_notification("window/showMessage", WAIT, |p| {
        p["message"]
            .as_str()
            .is_some_and(|m| m.contains("has not stopped 2 s after"))
    });
    assert!(
        notice["message"]
            .as_str()
            .is_some_and(|m| m.contains("names will be lost") && m.contains("push.interrupt")),
        "{notice}"
    );

    // The second interrupt restarts the worker, and says what that costs.
    let r = lsp
        .command("push.interrupt", json!({}), WAIT)
        .expect("second interrupt");
    assert_eq!(
        (r["ok"].clone(), r["restarted"].clone()),
        (json!(true), json!(true)),
        "{r}"
    );
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("names this session defined before are lost")),
        "{r}"
    );
    let ended = lsp.response(stuck, WAIT);
    let said = match &ended {
        Ok(outcome) => outcome.to_string(),
        Err(error) => error.to_string(),
    };
    assert!(
        said.contains("SIGKILL"),
        "the stuck eval ends saying its worker was killed: {said}"
    );

    // The session goes on, on a new worker, without its names, and says so.
    let r = lsp
        .command(
            "push.eval",
            json!({"uri": file, "code": "'x' in globals()"}),
            WAIT,
        )
        .expect("eval after the restart");
    assert_eq!(r["value"], json!("False"), "{r}");
    assert!(
        r["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("names defined before are gone")),
        "{r}"
    );
    let r = lsp
        .command("push.interrupt", json!({}), WAIT)
        .expect("idle interrupt");
    assert_eq!(
        (r["ok"].clone(), r["restarted"].clone()),
        (json!(false), json!(false)),
        "{r}"
    );
}
