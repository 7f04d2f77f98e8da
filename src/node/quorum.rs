//! Whether the cluster has lost quorum, as this node can tell by asking the other voters, and
//! the words for it: how many voters answer, how many are needed, which are missing.
//!
//! A write that cannot reach a majority would otherwise wait until the client gives up; with
//! this the node says at once that quorum is lost and what to bring back.

use std::time::Duration;

use push_protocol::Op;

use super::Node;

/// How long each voter has to answer the probe.
const PROBE_LIMIT: Duration = Duration::from_millis(700);
/// A leader that has not heard a majority for this long probes the voters.
pub const QUORUM_ACK_STALE_MS: u64 = 1_000;

impl Node {
    /// Asks every other voter for a ping; the message when fewer than a majority (this node
    /// included) answer, None while quorum holds.
    pub async fn quorum_lost(&self) -> Option<String> {
        quorum_lost_message(&self.voters_answering().await)
    }

    /// Every voter with whether it answers a ping now (this node always does), by id.
    pub async fn voters_answering(&self) -> Vec<(u64, bool)> {
        let voters: Vec<u64> = self
            .members()
            .into_iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        let asks = voters.iter().map(|id| async move {
            let up = *id == self.id || self.ask(*id, Op::Ping, PROBE_LIMIT).await.is_ok();
            (*id, up)
        });
        let mut answers = super::peers::concurrently(asks).await;
        answers.sort_unstable();
        answers
    }

    /// Whether this node leads but has not heard from a majority for a while.
    pub fn leader_without_quorum(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.state == openraft::ServerState::Leader
            && m.millis_since_quorum_ack
                .is_some_and(|ms| ms > QUORUM_ACK_STALE_MS)
    }
}

/// "quorum lost: …" given each voter's (id, answered); None while a majority answers.
pub fn quorum_lost_message(voters: &[(u64, bool)]) -> Option<String> {
    let total = voters.len();
    let up: Vec<String> = voters
        .iter()
        .filter(|(_, up)| *up)
        .map(|(id, _)| id.to_string())
        .collect();
    let down: Vec<String> = voters
        .iter()
        .filter(|(_, up)| !*up)
        .map(|(id, _)| id.to_string())
        .collect();
    let majority = total / 2 + 1;
    if total == 0 || up.len() >= majority {
        return None;
    }
    let missing = majority - up.len();
    Some(format!(
        "quorum lost: {} of {total} voters answer (nodes {}), {majority} are needed: {missing} more voter{} missing — bring back {missing} of nodes {} (a voter that is gone for good stays a member until it is removed)",
        up.len(),
        if up.is_empty() { "none".to_string() } else { up.join(", ") },
        if missing == 1 { " is" } else { "s are" },
        down.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::quorum_lost_message;

    #[test]
    fn says_how_many_voters_are_missing() {
        assert_eq!(
            quorum_lost_message(&[(1, true), (2, true), (3, false)]),
            None
        );
        let m = quorum_lost_message(&[(1, true), (2, true), (3, false), (4, false), (5, false)])
            .expect("lost");
        assert!(
            m.starts_with("quorum lost: 2 of 5 voters answer (nodes 1, 2), 3 are needed: 1 more voter is missing — bring back 1 of nodes 3, 4, 5"),
            "{m}"
        );
        let m = quorum_lost_message(&[(1, true), (2, false), (3, false), (4, false), (5, false)])
            .expect("lost");
        assert!(m.contains("2 more voters are missing"), "{m}");
    }
}
