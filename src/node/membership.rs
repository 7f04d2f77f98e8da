//! Membership changes beyond a plain join: adding a learner, promoting it to voter, and
//! removing a member — with the checks that keep a removal from costing the cluster its
//! quorum.
//!
//! Each change runs on the leader (the `ops` layer forwards it there), one at a time (the
//! node's membership lock), and returns once Raft has committed it.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use push_protocol::{ErrorBody, ErrorCode, Member, Op};

use super::{forward_of, internal, Node, Route};

/// How long a learner has to answer before it is promoted.
const PROMOTE_PING: Duration = Duration::from_millis(700);

/// Why a removal would break the cluster, or None when it is safe. `voters` are the current
/// voters with whether each answers now; `id` is the voter to remove.
pub fn removal_refused(voters: &[(u64, bool)], id: u64) -> Option<String> {
    let left: Vec<(u64, bool)> = voters.iter().copied().filter(|(v, _)| *v != id).collect();
    if left.is_empty() {
        return Some(format!(
            "node {id} is the last voter: without it no node could decide anything. Add another \
             node (`push node --join`) first, or stop the cluster instead"
        ));
    }
    let alive: Vec<String> = left
        .iter()
        .filter(|(_, up)| *up)
        .map(|(v, _)| v.to_string())
        .collect();
    let dead: Vec<String> = left
        .iter()
        .filter(|(_, up)| !*up)
        .map(|(v, _)| v.to_string())
        .collect();
    let majority = left.len() / 2 + 1;
    if alive.len() >= majority {
        return None;
    }
    Some(format!(
        "removing node {id} would lose quorum: of the {} voters left, {} answer{} (nodes {}) and \
         {majority} are needed. Bring back node{} {} first, or remove {} first",
        left.len(),
        alive.len(),
        if alive.len() == 1 { "s" } else { "" },
        if alive.is_empty() {
            "none".to_string()
        } else {
            alive.join(", ")
        },
        if dead.len() == 1 { "" } else { "s" },
        dead.join(", "),
        if dead.len() == 1 {
            "that dead node"
        } else {
            "the dead nodes"
        },
    ))
}

/// "1 (voter), 2 (learner)": the members, for messages.
pub fn describe(members: &[Member]) -> String {
    if members.is_empty() {
        return "none".into();
    }
    members
        .iter()
        .map(|m| format!("{} ({})", m.id, if m.voter { "voter" } else { "learner" }))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Node {
    /// The member `id`, or a NotFound naming the members there are.
    fn member(&self, id: u64) -> Result<Member, ErrorBody> {
        let members = self.members();
        members.iter().find(|m| m.id == id).cloned().ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!(
                    "node {id} is not a member of this cluster (members: {}); `push status` lists them",
                    describe(&members)
                ),
            )
        })
    }

    /// Adds node `id` at `addr` as a learner and waits until it has caught up with the log.
    /// A node that already is a member at that address is left as it is.
    pub async fn join_learner(&self, id: u64, addr: &str) -> Result<Route<Vec<Member>>, ErrorBody> {
        let _serial = self.membership.lock().await;
        if let Some(m) = self.members().into_iter().find(|m| m.id == id) {
            if m.addr != addr {
                return Err(ErrorBody::new(
                    ErrorCode::Invalid,
                    format!(
                        "node id {id} is already a member at {}; pick another --id",
                        m.addr
                    ),
                ));
            }
            return Ok(Route::Done(self.members()));
        }
        match self.raft.add_learner(id, BasicNode::new(addr), true).await {
            Ok(_) => Ok(Route::Done(self.members())),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => forward_of(&f),
            Err(e) => Err(internal(format!("adding node {id} as learner: {e}"))),
        }
    }

    /// Makes learner `id` a voter, once it answers.
    pub async fn promote(&self, id: u64) -> Result<Route<Vec<Member>>, ErrorBody> {
        let _serial = self.membership.lock().await;
        let member = self.member(id)?;
        if member.voter {
            return Err(ErrorBody::new(
                ErrorCode::Invalid,
                format!("node {id} is already a voter; nothing to promote"),
            ));
        }
        // A voter that is down from the start weakens the quorum it joins.
        if id != self.id && self.ask(id, Op::Ping, PROMOTE_PING).await.is_err() {
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                format!(
                    "learner {id} at {} does not answer; start it (and let it catch up) before promoting it",
                    member.addr
                ),
            ));
        }
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(Route::Done(self.members())),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => forward_of(&f),
            Err(e) => Err(internal(format!("promoting node {id} to voter: {e}"))),
        }
    }

    /// Removes member `id` (voter or learner, running or not). A voter's removal is refused
    /// when it is the last voter or when the voters left would not have a live majority.
    /// Removing the leader itself works: it steps down once the change commits.
    pub async fn remove(&self, id: u64) -> Result<Route<Vec<Member>>, ErrorBody> {
        let _serial = self.membership.lock().await;
        let member = self.member(id)?;
        let change = if member.voter {
            let voters = self.voters_answering().await;
            if let Some(lost) = super::quorum::quorum_lost_message(&voters) {
                return Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!("cannot change the members now: {lost}"),
                ));
            }
            if let Some(why) = removal_refused(&voters, id) {
                return Err(ErrorBody::new(ErrorCode::Invalid, why));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(Route::Done(self.members())),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => forward_of(&f),
            Err(e) => Err(internal(format!("removing node {id}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::removal_refused;

    #[test]
    fn a_removal_must_leave_a_live_majority_of_voters() {
        // Removing a dead voter of three, or a live one while all answer: fine.
        assert_eq!(
            removal_refused(&[(1, true), (2, true), (3, false)], 3),
            None
        );
        assert_eq!(removal_refused(&[(1, true), (2, true), (3, true)], 1), None);
        // Removing a live voter while another is dead leaves 1 of 2 answering.
        let why = removal_refused(&[(1, true), (2, true), (3, false)], 2).expect("refused");
        assert!(
            why.starts_with("removing node 2 would lose quorum: of the 2 voters left, 1 answers (nodes 1) and 2 are needed. Bring back node 3 first, or remove that dead node first"),
            "{why}"
        );
        // Five voters, two dead: removing a dead one is fine, a live one is not.
        let five = [(1, true), (2, true), (3, true), (4, false), (5, false)];
        assert_eq!(removal_refused(&five, 4), None);
        assert!(removal_refused(&five, 1).is_some());
    }

    #[test]
    fn the_last_voter_is_never_removed() {
        let why = removal_refused(&[(1, true)], 1).expect("refused");
        assert!(why.contains("node 1 is the last voter"), "{why}");
    }
}
