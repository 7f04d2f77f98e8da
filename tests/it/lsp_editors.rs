//! Real third-party LSP clients against `push lsp` on a live node: Neovim's built-in client
//! (a Lua script) and Emacs (eglot + push.el, its ERT suite).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::lsp::{deploy_and_wait, write_app, APP_PY, BOOM_PY};
use crate::support::cluster::push_bin;
use crate::support::Cluster;

/// Runs an editor to its end, or kills it after `within`; says whether it passed, with its
/// output.
fn run_with_timeout(mut command: Command, within: Duration) -> (bool, String) {
    let out_file = tempfile::NamedTempFile::new().expect("temp");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out_file.reopen().expect("reopen"))
        .stderr(out_file.reopen().expect("reopen"))
        .spawn()
        .expect("spawn editor");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(out_file.path()).unwrap_or_default();
    (status.is_some_and(|s| s.success()), output)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neovim_builtin_lsp_client_completes_hovers_and_evals() {
    let cluster = Cluster::start(1).await;
    let app = write_app(cluster.dir.path());
    deploy_and_wait(&cluster, &app, 1, "before").await;
    let mut nvim = Command::new("nvim");
    nvim.args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!(
            "luafile {}",
            repo().join("tests/it/editors/nvim_lsp.lua").display()
        ))
        .env("PUSH_BIN", push_bin())
        .env("PUSH_APP", &app)
        .env("PUSH_ADDR", cluster.addr(1))
        .env("PUSH_TOKEN", &cluster.token)
        .env("HOME", cluster.dir.path());
    let (passed, output) = run_with_timeout(nvim, Duration::from_secs(90));
    assert!(passed, "neovim run failed:\n{output}");
    assert!(output.contains("nvim: all checks passed"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emacs_push_el_ert_suite_against_a_live_node() {
    let cluster = Cluster::start(1).await;
    let app = write_app(cluster.dir.path());
    // A route that fails, for the *push-sldb* tests.
    std::fs::write(app.join("app.py"), format!("{APP_PY}{BOOM_PY}")).expect("app.py");
    deploy_and_wait(&cluster, &app, 1, "before").await;
    let emacs_dir = repo().join("editor-plugins/emacs");
    let mut emacs = Command::new("emacs");
    emacs
        .args(["-Q", "--batch", "--eval"])
        .arg("(progn (setq package-directory-list '(\"/usr/share/emacs/site-lisp/elpa\")) (package-initialize))")
        .arg("-L")
        .arg(&emacs_dir)
        .arg("-l")
        .arg(emacs_dir.join("test/push-test.el"))
        .args(["-f", "ert-run-tests-batch-and-exit"])
        .env("PUSH_BIN", push_bin())
        .env("PUSH_APP", &app)
        .env("PUSH_HTTP", cluster.http(1))
        .env("PUSH_ADDR", cluster.addr(1))
        .env("PUSH_TOKEN", &cluster.token)
        .env("HOME", cluster.dir.path());
    let (passed, output) = run_with_timeout(emacs, Duration::from_secs(120));
    assert!(passed, "ERT run failed:\n{output}");
    assert!(
        output.contains("Ran 13 tests, 13 results as expected"),
        "{output}"
    );
    println!("{output}");
}
