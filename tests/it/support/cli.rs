//! Running the `push` CLI in tests: the binary under test, a run with text on its stdin, and
//! the checks that a run succeeded (its stdout) or failed (its stderr).

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The `push` binary under test: `PUSH_TEST_BIN` if set (scripts/test points it at a binary
/// built for another CPython to run the smoke tests), else the one cargo built with the tests.
pub fn push_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("PUSH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_push").to_string())
    })
}

/// Runs `command` with `stdin` written to its standard input, capturing its output.
pub fn with_stdin(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run push");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for push")
}

/// Stdout of a CLI run that must succeed.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "push failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Stderr of a CLI run that must fail.
pub fn fails(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "push unexpectedly succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}
