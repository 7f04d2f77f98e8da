//! Multi-line input: the node decides whether what was typed is a complete statement.

use std::sync::Arc;
use std::time::Duration;

use push_protocol::{Op, Reply};
use reedline::{ValidationResult, Validator};

use crate::conn::Conn;

/// Asks the node's Python (`codeop`); falls back to a local rule when the node is away.
pub struct NodeValidator {
    conn: Arc<Conn>,
}

impl NodeValidator {
    pub fn new(conn: Arc<Conn>) -> NodeValidator {
        NodeValidator { conn }
    }
}

/// Without the node: a line ending in `:` or `\`, or an indented last line, continues.
pub fn local_rule(code: &str) -> bool {
    let last = code.lines().last().unwrap_or("");
    let trimmed = last.trim_end();
    !(trimmed.ends_with(':')
        || trimmed.ends_with('\\')
        || (code.contains('\n') && last.starts_with([' ', '\t']) && !code.ends_with('\n')))
}

impl Validator for NodeValidator {
    fn validate(&self, line: &str) -> ValidationResult {
        if line.trim_start().starts_with(':') {
            return ValidationResult::Complete;
        }
        let complete = match self.conn.call_timeout(
            Op::IsComplete {
                code: line.to_string(),
            },
            Duration::from_secs(2),
        ) {
            Ok(Reply::IsComplete { complete }) => complete,
            _ => local_rule(line),
        };
        if complete {
            ValidationResult::Complete
        } else {
            ValidationResult::Incomplete
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_rule() {
        assert!(super::local_rule("x = 1"));
        assert!(!super::local_rule("def f():"));
        assert!(!super::local_rule("def f():\n    return 1"));
        assert!(super::local_rule("def f():\n    return 1\n"));
    }
}
