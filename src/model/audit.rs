//! The replicated audit log: who deployed, rolled back, restarted, evaluated or hot-patched
//! what, when and through which node. Bounded per kind: changes (deploys, activations,
//! rollbacks, restarts) and evals (evals, hot-patches, lambdas) each keep their newest
//! entries, so a burst of evals never pushes a deploy out of the log.

use std::collections::VecDeque;

use push_protocol::{AuditEntry, AuditNote};
use serde::{Deserialize, Serialize};

/// Entries kept of each kind (changes, evals); older ones are dropped.
pub const MAX_ENTRIES: usize = 5_000;
/// Longest `detail` kept (evaluated source is cut here).
pub const MAX_DETAIL: usize = 4 << 10;
/// Longest `who` kept.
const MAX_WHO: usize = 256;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditLog {
    /// Deploys, activations, rollbacks, restarts.
    changes: VecDeque<AuditEntry>,
    /// Evals, hot-patches, lambdas.
    evals: VecDeque<AuditEntry>,
    last_seq: u64,
}

/// Whether an action changed replicated state (kept apart from the more numerous evals).
fn is_change(action: &str) -> bool {
    !matches!(action, "eval" | "hot-patch" | "run")
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying so.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
}

impl AuditLog {
    /// Appends an entry for `note`; `action` and `detail` override the note's when the
    /// outcome decides them (a commit's version, a rollback's from/to).
    pub fn record(&mut self, note: &AuditNote, action: Option<&str>, detail: Option<String>) {
        self.last_seq += 1;
        let entry = AuditEntry {
            seq: self.last_seq,
            time_ms: note.time_ms,
            node: note.node,
            who: cut(&note.who, MAX_WHO),
            action: cut(action.unwrap_or(&note.action), 32),
            app: note.app.clone(),
            detail: cut(&detail.unwrap_or_else(|| note.detail.clone()), MAX_DETAIL),
        };
        let kind = if is_change(&entry.action) {
            &mut self.changes
        } else {
            &mut self.evals
        };
        kind.push_back(entry);
        if kind.len() > MAX_ENTRIES {
            kind.pop_front();
        }
    }

    /// Entries after `after`, oldest first, at most `limit`; with `after == 0`, the newest
    /// `limit` entries (what `push audit` shows first).
    pub fn query(&self, after: u64, limit: usize, action: Option<&str>) -> Vec<AuditEntry> {
        // Both kinds are in seq order: merge them.
        let (mut c, mut e) = (self.changes.iter().peekable(), self.evals.iter().peekable());
        let merged = std::iter::from_fn(move || match (c.peek(), e.peek()) {
            (Some(x), Some(y)) if x.seq < y.seq => c.next(),
            (Some(_), Some(_)) => e.next(),
            (Some(_), None) => c.next(),
            (None, _) => e.next(),
        });
        let matching = merged.filter(|e| e.seq > after && action.is_none_or(|a| e.action == a));
        if after == 0 {
            let all: Vec<&AuditEntry> = matching.collect();
            let skip = all.len().saturating_sub(limit);
            all.into_iter().skip(skip).cloned().collect()
        } else {
            matching.take(limit).cloned().collect()
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(action: &str, detail: &str) -> AuditNote {
        AuditNote {
            node: 1,
            time_ms: 10,
            who: "push-client 0.1 (push repl; ann@box)".into(),
            action: action.into(),
            app: Some("shop".into()),
            detail: detail.into(),
        }
    }

    #[test]
    fn query_newest_first_page_then_follow() {
        let mut log = AuditLog::default();
        for i in 0..10 {
            log.record(
                &note(if i % 2 == 0 { "eval" } else { "deploy" }, &format!("{i}")),
                None,
                None,
            );
        }
        let newest = log.query(0, 3, None);
        assert_eq!(
            newest.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        let after = log.query(7, 100, Some("deploy"));
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![8, 10]);
        assert!(after.iter().all(|e| e.action == "deploy"));
    }

    #[test]
    fn bounded_and_details_cut_on_char_boundaries() {
        let mut log = AuditLog::default();
        log.record(&note("deploy", "v1"), None, None);
        for _ in 0..MAX_ENTRIES + 7 {
            log.record(&note("eval", "x"), None, None);
        }
        assert_eq!(log.evals.len(), MAX_ENTRIES);
        assert_eq!(log.evals.front().map(|e| e.seq), Some(9));
        // Evals never push a change out.
        let deploys = log.query(0, 10, Some("deploy"));
        assert_eq!(deploys.len(), 1);
        assert_eq!(deploys[0].seq, 1);
        let all = log.query(0, 3, None);
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![5_006, 5_007, 5_008]
        );
        assert_eq!(log.query(5_006, 10, None).len(), 2);
        log.record(&note("eval", &"é".repeat(MAX_DETAIL)), None, None);
        let last = log.query(0, 1, None).remove(0);
        assert!(last.detail.len() < MAX_DETAIL + 40, "{}", last.detail.len());
        assert!(last.detail.ends_with("bytes cut)"));
        log.record(
            &note("activate", ""),
            Some("rollback"),
            Some("HEAD 3 → 2".into()),
        );
        let last = log.query(0, 1, None).remove(0);
        assert_eq!(
            (last.action.as_str(), last.detail.as_str()),
            ("rollback", "HEAD 3 → 2")
        );
    }
}
