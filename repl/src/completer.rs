//! Tab completion from the live node: the node's Python completes against real objects.

use std::sync::Arc;
use std::time::Duration;

use push_protocol::{Op, Reply};
use reedline::{Completer, CompletionResult, Span, Suggestion};

use crate::conn::Conn;

/// Asks the node; an unreachable node gives no completions rather than a frozen terminal.
pub struct NodeCompleter {
    conn: Arc<Conn>,
}

impl NodeCompleter {
    pub fn new(conn: Arc<Conn>) -> NodeCompleter {
        NodeCompleter { conn }
    }
}

impl Completer for NodeCompleter {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        let op = Op::Complete {
            session: self.conn.session(),
            code: line.to_string(),
            cursor: pos,
            // Inside `:in MODULE`, names complete from that module, as they evaluate there.
            module: self.conn.module(),
        };
        let suggestions: Vec<Suggestion> = match self.conn.call_timeout(op, Duration::from_secs(2))
        {
            Ok(Reply::Completions { start, items }) => items
                .into_iter()
                .map(|value| Suggestion {
                    value,
                    span: Span::new(start.min(pos), pos),
                    append_whitespace: false,
                    ..Default::default()
                })
                .collect(),
            _ => Vec::new(),
        };
        CompletionResult::fresh(suggestions)
    }
}
