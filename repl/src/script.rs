//! Piped stdin: a script runner. Statements run one at a time as the interactive interpreter
//! would split them (the node's own `codeop` has the last word); the first error stops the run
//! with exit code 1.

use std::io::BufRead;
use std::time::Duration;

use push_protocol::{Op, Reply};

use crate::conn::Conn;
use crate::output;
use crate::Hooks;

/// Splits a script into statements: a new unindented line ends the statement before it,
/// unless `complete` (the node's Python, see [`node_says_complete`]) says the statement so far
/// still needs more lines, such as a triple-quoted string whose lines start at column 0.
pub fn statements(text: &str, mut complete: impl FnMut(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let starts_new = !line.is_empty()
            && !line.starts_with([' ', '\t', ')', ']', '}', '#'])
            && !is_continuation(line);
        if starts_new
            && !current.trim().is_empty()
            && !current
                .trim_end()
                .ends_with([':', '\\', ',', '(', '[', '{'])
            && complete(&current)
        {
            out.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

fn is_continuation(line: &str) -> bool {
    ["else", "elif ", "except", "finally", "case "]
        .iter()
        .any(|k| line.starts_with(k))
}

/// Whether the node's Python (`codeop`, as its interactive interpreter decides) takes `code`
/// as a whole statement; the blank line it is given ends an indented block. When the node
/// cannot say, the line-based split stands.
pub fn node_says_complete(conn: &Conn, code: &str) -> bool {
    let op = Op::IsComplete {
        code: format!("{code}\n"),
    };
    match conn.call_timeout(op, Duration::from_secs(5)) {
        Ok(Reply::IsComplete { complete }) => complete,
        _ => true,
    }
}

/// Runs stdin as a script; returns the exit code.
pub fn run(conn: &Conn, hooks: &Hooks) -> i32 {
    if let Err(e) = conn.connect() {
        eprintln!("{e}");
        return 1;
    }
    let mut text = String::new();
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
            }
            Err(e) => {
                eprintln!("reading stdin: {e}");
                return 1;
            }
        }
    }
    for statement in statements(&text, |code| node_says_complete(conn, code)) {
        if statement.trim_start().starts_with(':') {
            // Meta commands work in scripts too (`:tail` prints what is there, no following).
            if let crate::commands::Flow::Quit =
                crate::commands::run(conn, hooks, &statement.trim()[1..])
            {
                return 0;
            }
            continue;
        }
        if !output::eval_and_print(conn, &statement) {
            return 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn splits_like_the_interactive_interpreter() {
        let script = "x = 1\ndef f(a):\n    if a:\n        return 1\n    else:\n        return 2\n\nprint(f(x))\ntry:\n    pass\nexcept Exception:\n    pass\ny = (1,\n2)\n";
        let got = statements(script, |_| true);
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got[1].starts_with("def f(a):") && got[1].contains("else:"));
        assert_eq!(got[2], "print(f(x))\n");
        assert!(got[3].contains("except Exception:"));
        assert_eq!(got[4], "y = (1,\n2)\n");
    }

    #[test]
    fn a_statement_the_node_calls_incomplete_takes_the_next_lines() {
        // Stands in for codeop: an odd number of triple quotes is an open string.
        let open = |code: &str| code.matches("\"\"\"").count().is_multiple_of(2);
        let script = "s = \"\"\"first\nsecond\n\"\"\"\nprint(s)\n";
        let got = statements(script, open);
        assert_eq!(got, ["s = \"\"\"first\nsecond\n\"\"\"\n", "print(s)\n"]);
    }
}
