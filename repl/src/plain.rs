//! Line mode for terminals that cannot be driven (`TERM=dumb`, such as an Emacs comint
//! buffer): print a prompt, read whole lines, let the node decide when a block is complete,
//! evaluate. No colour editing, completion menu or raw mode; meta commands work as usual.
//! Ctrl-C (SIGINT, which is what Emacs' comint sends for C-c C-c) interrupts the running
//! eval on the node, or, at the prompt, drops the block being typed as Python's REPL does;
//! it never ends the REPL.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use push_protocol::{Op, Reply};

use crate::conn::Conn;
use crate::{commands, output, prompt, validator, Hooks};

/// Whether the terminal asks for line mode.
pub fn wanted() -> bool {
    std::env::var("TERM").is_ok_and(|t| t == "dumb")
        || std::env::var("PUSH_REPL_PLAIN").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn complete(conn: &Conn, code: &str) -> bool {
    match conn.call_timeout(
        Op::IsComplete {
            code: code.to_string(),
        },
        Duration::from_secs(2),
    ) {
        Ok(Reply::IsComplete { complete }) => complete,
        _ => validator::local_rule(code),
    }
}

/// Whether an eval is running (its own Ctrl-C handling interrupts it on the node).
static EVALUATING: AtomicBool = AtomicBool::new(false);
/// Set by a Ctrl-C at the prompt: the block typed so far is dropped.
static DROP_BLOCK: AtomicBool = AtomicBool::new(false);

/// Keeps SIGINT from ending the process: at the prompt it says `KeyboardInterrupt` and
/// prompts again; during an eval [`output::eval_and_print`] interrupts it on the node. The
/// handler is installed before this returns, so no Ctrl-C can fall through to the default.
fn catch_ctrl_c(conn: &Arc<Conn>) {
    let installed = {
        let _runtime = conn.handle().enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    };
    let Ok(mut interrupts) = installed else {
        return;
    };
    let conn = conn.clone();
    conn.handle().clone().spawn(async move {
        while interrupts.recv().await.is_some() {
            if !EVALUATING.load(Ordering::SeqCst) {
                DROP_BLOCK.store(true, Ordering::SeqCst);
                print!(
                    "\nKeyboardInterrupt\n{} >>> ",
                    prompt::NodePrompt::from(&conn).text()
                );
                let _ = std::io::stdout().flush();
            }
        }
    });
}

/// Runs until end of input or `:quit`; returns the exit code.
pub fn run(conn: &Arc<Conn>, hooks: &Hooks) -> i32 {
    catch_ctrl_c(conn);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut block = String::new();
    loop {
        let text = if block.is_empty() {
            format!("{} >>> ", prompt::NodePrompt::from(conn).text())
        } else {
            "... ".to_string()
        };
        print!("{text}");
        let _ = std::io::stdout().flush();
        let line = match lines.next() {
            Some(Ok(line)) => line,
            Some(Err(e)) => {
                eprintln!("reading input: {e}");
                return 1;
            }
            None => return 0,
        };
        if DROP_BLOCK.swap(false, Ordering::SeqCst) {
            block.clear();
        }
        if block.is_empty() {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(meta) = line.trim_start().strip_prefix(':') {
                match commands::run(conn, hooks, meta) {
                    commands::Flow::Continue => continue,
                    commands::Flow::Quit => return 0,
                }
            }
        }
        if !block.is_empty() {
            block.push('\n');
        }
        block.push_str(&line);
        // An open block ends with an empty line, as in the interactive interpreter.
        let code = if line.trim().is_empty() {
            format!("{block}\n")
        } else {
            block.clone()
        };
        if complete(conn, &code) {
            EVALUATING.store(true, Ordering::SeqCst);
            output::eval_and_print(conn, code.trim_end());
            EVALUATING.store(false, Ordering::SeqCst);
            block.clear();
        }
    }
}
