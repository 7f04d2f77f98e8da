//! The prompt names where code will run and the HEAD of the app the session works on:
//! `node1/w2(leader)@v7 >>> ` for `main` (node 1, its Python worker 2), `node1(leader) bench@v3 >>> ` after `:app bench`; a
//! user other than the cluster token is named first: `alice@node1(leader)@v7 >>> `.

use std::borrow::Cow;

use reedline::{Prompt, PromptEditMode, PromptHistorySearch, PromptHistorySearchStatus};

use crate::conn::Conn;

/// A snapshot of the link for one prompt.
pub struct NodePrompt {
    left: String,
}

impl NodePrompt {
    pub fn from(conn: &Conn) -> NodePrompt {
        let module = match conn.pm() {
            Some((id, frame)) => format!(" pm {id} frame {frame}"),
            None => conn
                .module()
                .map(|m| format!(" in {m}"))
                .unwrap_or_default(),
        };
        let user = conn
            .me()
            .filter(|me| !me.bootstrap)
            .map(|me| format!("{}@", me.user))
            .unwrap_or_default();
        let left = match conn.status() {
            Some(s) => {
                let head = head_label(&s.heads, &crate::commands::current_app());
                let worker = conn
                    .session()
                    .and_then(|id| s.workers.iter().find(|w| w.sessions.contains(&id)))
                    .map(|w| format!("/w{}", w.slot))
                    .unwrap_or_default();
                format!("{user}node{}{worker}({}){head}{module}", s.id, s.role)
            }
            None => format!("{}(disconnected){module}", conn.addr()),
        };
        NodePrompt { left }
    }

    pub fn text(&self) -> &str {
        &self.left
    }
}

/// `@vN` of `app` (named when it is not `main`), or nothing (named) before its first deploy.
fn head_label(heads: &[(String, u64)], app: &str) -> String {
    let version = heads.iter().find(|(a, _)| a == app).map(|(_, v)| *v);
    match (app == "main", version) {
        (true, Some(v)) => format!("@v{v}"),
        (true, None) => String::new(),
        (false, Some(v)) => format!(" {app}@v{v}"),
        (false, None) => format!(" {app}"),
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

#[cfg(test)]
mod tests {
    use super::head_label;

    #[test]
    fn the_prompt_shows_the_sessions_app_not_the_first_one() {
        let heads = vec![("bench".to_string(), 10), ("main".to_string(), 1)];
        assert_eq!(head_label(&heads, "main"), "@v1");
        assert_eq!(head_label(&heads, "bench"), " bench@v10");
        assert_eq!(head_label(&heads, "other"), " other");
        assert_eq!(head_label(&heads[..1], "main"), "");
    }
}
