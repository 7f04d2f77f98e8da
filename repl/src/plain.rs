//! Line mode for terminals that cannot be driven (`TERM=dumb`, such as an Emacs comint
//! buffer): print a prompt, read whole lines, let the node decide when a block is complete,
//! evaluate. No colour editing, completion menu or raw mode; meta commands work as usual.

use std::io::{BufRead, Write};
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

/// Runs until end of input or `:quit`; returns the exit code.
pub fn run(conn: &Conn, hooks: &Hooks) -> i32 {
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
            output::eval_and_print(conn, code.trim_end());
            block.clear();
        }
    }
}
