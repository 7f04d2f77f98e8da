//! The prompt names where code will run: `node1(leader)@v7 >>> `.

use std::borrow::Cow;

use reedline::{Prompt, PromptEditMode, PromptHistorySearch, PromptHistorySearchStatus};

use crate::conn::Conn;

/// A snapshot of the link for one prompt.
pub struct NodePrompt {
    left: String,
}

impl NodePrompt {
    pub fn from(conn: &Conn) -> NodePrompt {
        let module = conn
            .module()
            .map(|m| format!(" in {m}"))
            .unwrap_or_default();
        let left = match conn.status() {
            Some(s) => {
                let head = s
                    .heads
                    .first()
                    .map(|(_, v)| format!("@v{v}"))
                    .unwrap_or_default();
                format!("node{}({}){head}{module}", s.id, s.role)
            }
            None => format!("{}(disconnected){module}", conn.addr()),
        };
        NodePrompt { left }
    }

    pub fn text(&self) -> &str {
        &self.left
    }
}

impl Prompt for NodePrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.left)
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed(" >>> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("... ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        let prefix = match search.status {
            PromptHistorySearchStatus::Passing => "",
            PromptHistorySearchStatus::Failing => "failing ",
        };
        Cow::Owned(format!("({prefix}search: {}) ", search.term))
    }
}
