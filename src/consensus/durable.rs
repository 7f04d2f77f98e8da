//! How far the Raft log is on disk, and the one case where openraft is told an append is done
//! before it is: the leader's own new entries, when its log writer is idle, so that replication
//! to the followers runs in parallel with the leader's `fdatasync` instead of after it (Raft
//! dissertation §10.2.1). A busy writer keeps the synchronous path: there the wait gathers
//! the writes arriving meanwhile into the leader's next append.
//!
//! openraft 0.9 holds its core until the log store reports an append flushed, and only then
//! sends the entries to the followers (`RaftCore::run_command`, `Command::AppendInputEntries`
//! awaits `append_to_log`; the `Replicate` commands queued after it wait their turn). So the
//! leader's fsync and the followers' round trip ran one after the other. Reporting the
//! leader's own append at once lets the replication go out while the writer thread syncs.
//!
//! Why that is safe. openraft then counts the leader toward the quorum before its copy is on
//! disk, so its commit index `C` may run ahead of what a majority holds durably. Nothing
//! outside openraft's core ever acts on `C` itself, only on `min(C, D)`, `D` being the last
//! index the leader's log has on disk ([`DurableIndex`]):
//! - the state machine applies an entry only once `D` reaches it (`StateMachineStore::apply`
//!   waits), so a client's answer and every linearizable read (both wait for the leader's
//!   apply) come after the entry is durable on the leader *and* on the followers whose
//!   acknowledgements made up `C` (a follower answers only after its own `fdatasync`): a
//!   durable majority, which is Raft's commit rule;
//! - the commit index sent to followers in AppendEntries is cut to `D` (`network.rs`), so no
//!   follower applies an entry that is not yet durable on a majority.
//!
//! If the leader dies before its sync, its unsynced entries were never applied anywhere nor
//! acknowledged, so whichever log wins the next election, no node has to unapply anything.
//! Only plain entries of the leader's own current term go early: membership changes and the
//! leader's first blank entry keep the synchronous path, so openraft's membership and
//! leadership decisions still see only durable entries. Followers always report after the
//! sync: their acknowledgement is their vote toward the quorum.

use std::sync::Arc;

use openraft::{Entry, EntryPayload, Vote};
use tokio::sync::watch;

use super::TypeConfig;

/// The log's on-disk progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    /// Every entry at or below this index that the log holds now is on disk.
    last: Option<u64>,
    /// A write or sync failed: nothing after it will become durable in this process.
    failed: bool,
}

/// What one log record does to the durable index once it is synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Effect {
    None,
    /// Entries up to this index were appended (appends extend the log contiguously).
    Appended(u64),
    /// Entries at and after this index were removed.
    Truncated(u64),
}

/// Why an entry will never be durable.
#[derive(Debug, thiserror::Error)]
#[error("the raft log could not be written to disk; this node stops applying writes")]
pub struct NotDurable;

/// The last index of the log known to be on disk; shared by the log writer (which moves it),
/// the state machine (which waits for it) and the peer network (which cuts the commit index
/// it sends to it). Cheap to clone.
#[derive(Clone)]
pub struct DurableIndex(Arc<watch::Sender<Mark>>);

impl DurableIndex {
    /// Starts at `last`: what the log file held when opened (and synced).
    pub(super) fn new(last: Option<u64>) -> DurableIndex {
        DurableIndex(Arc::new(watch::Sender::new(Mark {
            last,
            failed: false,
        })))
    }

    /// The last index on disk (None: none yet).
    pub fn last(&self) -> Option<u64> {
        self.0.borrow().last
    }

    /// Records a synced batch: its records' effects, in the order they were written.
    pub(super) fn synced(&self, effects: impl Iterator<Item = Effect>) {
        let mut last = self.last();
        let before = last;
        for effect in effects {
            match effect {
                Effect::None => {}
                Effect::Appended(index) => last = Some(index),
                Effect::Truncated(index) => last = last.min(index.checked_sub(1)),
            }
        }
        if last != before {
            self.0.send_modify(|m| m.last = last);
        }
    }

    /// Records that the writer failed: waiters give up.
    pub(super) fn failed(&self) {
        self.0.send_modify(|m| m.failed = true);
    }

    /// Waits until the entry at `index` is on disk.
    pub async fn wait_for(&self, index: u64) -> Result<(), NotDurable> {
        let done = |m: &Mark| m.failed || m.last >= Some(index);
        let mark = *self.0.borrow();
        let mark = if done(&mark) {
            mark
        } else {
            let mut rx = self.0.subscribe();
            let seen = rx.wait_for(done).await.map_err(|_| NotDurable)?;
            *seen
        };
        if mark.last >= Some(index) {
            Ok(())
        } else {
            Err(NotDurable)
        }
    }
}

/// Whether `entries` are node `me`'s own new entries as the leader of `vote`'s term: plain
/// entries whose log ids carry `vote`'s leader, `vote` being committed and for `me`. Only
/// these may be reported appended before they are synced (see the module doc).
pub(super) fn leaders_own(me: u64, vote: Option<Vote<u64>>, entries: &[Entry<TypeConfig>]) -> bool {
    let Some(vote) = vote else { return false };
    vote.committed
        && vote.leader_id.node_id == me
        && !entries.is_empty()
        && entries.iter().all(|e| {
            e.log_id.leader_id == vote.leader_id && matches!(e.payload, EntryPayload::Normal(_))
        })
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::model::{Command, CommandOp};

    fn entry(term: u64, node: u64, index: u64, normal: bool) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, node), index),
            payload: if normal {
                EntryPayload::Normal(Command {
                    time_ms: 1,
                    op: CommandOp::KvDelete {
                        map: "m".into(),
                        key: "k".into(),
                    },
                })
            } else {
                EntryPayload::Blank
            },
        }
    }

    #[test]
    fn only_the_leaders_own_plain_entries_go_early() {
        let leader = Some(Vote::new_committed(3, 1));
        assert!(leaders_own(
            1,
            leader,
            &[entry(3, 1, 7, true), entry(3, 1, 8, true)]
        ));
        // A follower appending the leader's entries.
        assert!(!leaders_own(2, leader, &[entry(3, 1, 7, true)]));
        // Entries of an earlier term (a new leader resending them to this node).
        assert!(!leaders_own(1, leader, &[entry(2, 1, 7, true)]));
        // A candidate's vote (not committed) is no leadership.
        assert!(!leaders_own(
            1,
            Some(Vote::new(3, 1)),
            &[entry(3, 1, 7, true)]
        ));
        // The leader's blank entry and membership changes keep the synchronous path.
        assert!(!leaders_own(
            1,
            leader,
            &[entry(3, 1, 7, true), entry(3, 1, 8, false)]
        ));
        assert!(!leaders_own(1, None, &[entry(3, 1, 7, true)]));
        assert!(!leaders_own(1, leader, &[]));
    }

    #[tokio::test]
    async fn the_index_follows_appends_and_truncations_in_order() {
        let d = DurableIndex::new(None);
        d.synced([Effect::Appended(0), Effect::Appended(5)].into_iter());
        assert_eq!(d.last(), Some(5));
        d.synced([Effect::Truncated(4), Effect::None].into_iter());
        assert_eq!(d.last(), Some(3));
        d.synced([Effect::Truncated(0)].into_iter());
        assert_eq!(d.last(), None);
        d.synced([Effect::Appended(0), Effect::Truncated(9)].into_iter());
        assert_eq!(d.last(), Some(0));
        assert!(d.wait_for(0).await.is_ok());
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_its_entry_is_synced_or_the_writer_fails() {
        let d = DurableIndex::new(Some(2));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait_for(4).await.is_ok() }
        });
        d.synced([Effect::Appended(3)].into_iter());
        d.synced([Effect::Appended(4)].into_iter());
        assert!(waiter.await.expect("waiter"));

        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait_for(9).await.is_ok() }
        });
        d.failed();
        assert!(!waiter.await.expect("waiter"));
    }
}
