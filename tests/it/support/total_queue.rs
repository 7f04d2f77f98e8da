//! A total-queue checker in the style of Jepsen's: every acknowledged put is eventually taken
//! and acked (counting the drain after the faults healed), no item is acked by two takers,
//! and nothing is taken that was never put.

use std::collections::{BTreeMap, BTreeSet};

/// How an operation ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed before it could have taken effect.
    Failed,
    /// Sent, but the answer was lost: it may or may not have taken effect.
    Unknown,
}

/// What clients saw of a queue whose values are unique integers.
#[derive(Debug, Default)]
pub struct QueueHistory {
    /// Value -> how its put ended.
    pub puts: BTreeMap<i64, Outcome>,
    /// Every value a take returned, with who took it.
    pub taken: Vec<(i64, String)>,
    /// Acks sent for taken values: (value, taker, outcome; `Failed` also covers `ok: false`).
    pub acks: Vec<(i64, String, Outcome)>,
}

/// The counts behind a passing check.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueSummary {
    pub puts_ok: usize,
    pub puts_unknown: usize,
    pub acked: usize,
    /// Taken more than once (a lease ran out before its ack): allowed, at-least-once.
    pub redelivered: usize,
}

impl QueueHistory {
    /// Checks the history; the errors list every violation found.
    pub fn check(&self) -> Result<QueueSummary, Vec<String>> {
        let mut errors = Vec::new();
        let attempted: BTreeSet<i64> = self
            .puts
            .iter()
            .filter(|(_, o)| **o != Outcome::Failed)
            .map(|(v, _)| *v)
            .collect();
        let mut acked_by: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
        let mut maybe_acked: BTreeSet<i64> = BTreeSet::new();
        for (value, taker, outcome) in &self.acks {
            match outcome {
                Outcome::Ok => acked_by.entry(*value).or_default().push(taker),
                Outcome::Unknown => {
                    maybe_acked.insert(*value);
                }
                Outcome::Failed => {}
            }
        }
        for (value, takers) in &acked_by {
            if takers.len() > 1 {
                errors.push(format!(
                    "item {value} was acked by {} takers: {takers:?}",
                    takers.len()
                ));
            }
        }
        let mut takes: BTreeMap<i64, usize> = BTreeMap::new();
        for (value, taker) in &self.taken {
            *takes.entry(*value).or_default() += 1;
            if !attempted.contains(value) {
                errors.push(format!("{taker} took item {value}, which was never put"));
            }
        }
        let lost: Vec<i64> = self
            .puts
            .iter()
            .filter(|(v, o)| {
                **o == Outcome::Ok && !acked_by.contains_key(v) && !maybe_acked.contains(v)
            })
            .map(|(v, _)| *v)
            .collect();
        if !lost.is_empty() {
            errors.push(format!(
                "{} acknowledged puts were never taken and acked: {:?}",
                lost.len(),
                &lost[..lost.len().min(20)]
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(QueueSummary {
            puts_ok: self.puts.values().filter(|o| **o == Outcome::Ok).count(),
            puts_unknown: self
                .puts
                .values()
                .filter(|o| **o == Outcome::Unknown)
                .count(),
            acked: acked_by.len(),
            redelivered: takes.values().filter(|n| **n > 1).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> QueueHistory {
        let mut h = QueueHistory::default();
        for v in 0..10 {
            h.puts.insert(v, Outcome::Ok);
        }
        h.puts.insert(10, Outcome::Unknown); // never taken: fine, its put may have failed
        h.puts.insert(11, Outcome::Unknown); // taken: fine, its put went through
        h.puts.insert(12, Outcome::Failed);
        for v in (0..10).chain([11]) {
            h.taken.push((v, "a".into()));
            h.acks.push((v, "a".into(), Outcome::Ok));
        }
        // 3 was redelivered to b after a's lease ran out; b's ack came back false.
        h.taken.push((3, "b".into()));
        h.acks.push((3, "b".into(), Outcome::Failed));
        h
    }

    #[test]
    fn a_clean_history_passes_with_its_counts() {
        let summary = good().check().expect("clean history");
        assert_eq!(
            summary,
            QueueSummary {
                puts_ok: 10,
                puts_unknown: 2,
                acked: 11,
                redelivered: 1,
            }
        );
    }

    #[test]
    fn a_lost_acknowledged_put_is_caught() {
        let mut h = good();
        h.acks.retain(|(v, _, _)| *v != 4);
        let errors = h.check().unwrap_err();
        assert!(
            errors[0].contains("never taken and acked: [4]"),
            "{errors:?}"
        );
        // An ack whose answer was lost may have gone through: not a loss.
        h.acks.push((4, "a".into(), Outcome::Unknown));
        assert!(h.check().is_ok());
    }

    #[test]
    fn an_item_acked_by_two_takers_is_caught() {
        let mut h = good();
        h.acks.push((5, "b".into(), Outcome::Ok));
        let errors = h.check().unwrap_err();
        assert!(
            errors[0].contains("item 5 was acked by 2 takers"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_item_that_was_never_put_is_caught() {
        let mut h = good();
        h.taken.push((99, "c".into()));
        h.taken.push((12, "c".into())); // its put failed outright
        let errors = h.check().unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("took item 99"), "{errors:?}");
    }
}
