//! A linearizability checker for a history of read / write / compare-and-set on one register
//! (one kv key): Wing & Gong's search with Lowe's memoisation of (linearized set, value).
//!
//! Operations of unknown outcome (a timeout or a lost connection after the request was sent)
//! may take effect at any point after their invocation, or never; they are the expensive
//! part, so callers split histories per key and keep such operations few. Every check is
//! bounded by a deadline and answers [`Verdict::Timeout`] rather than running away.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// The register's value: None while the key is absent.
pub type Val = Option<i64>;

/// What an operation did, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// A read that returned this value.
    Read(Val),
    Write(i64),
    /// Compare-and-set; `ok` is the answer (None when the outcome is unknown).
    Cas {
        expected: Val,
        new: i64,
        ok: Option<bool>,
    },
}

/// One operation: invoked at `start`, completed at `end` (None: outcome unknown — it may
/// take effect any time after `start`, or never). Times are from one monotonic clock.
#[derive(Clone, Debug)]
pub struct Operation {
    pub start: Duration,
    pub end: Option<Duration>,
    pub call: Call,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order of the operations explains the results.
    NotLinearizable,
    /// The search did not finish in time.
    Timeout,
}

/// Applies `op` to `state`; None when the result contradicts the state.
fn step(state: Val, call: &Call, known: bool) -> Option<Val> {
    match call {
        Call::Read(v) => (*v == state).then_some(state),
        Call::Write(v) => Some(Some(*v)),
        Call::Cas { expected, new, ok } => match ok {
            Some(true) => (state == *expected).then_some(Some(*new)),
            Some(false) => (state != *expected).then_some(state),
            // Unknown: it either applied (only possible when it matched) or it did not, which
            // is the same as never linearizing it.
            None => (!known && state == *expected).then_some(Some(*new)),
        },
    }
}

/// Checks one register's history, starting from `initial`, within `budget`.
pub fn check(history: &[Operation], initial: Val, budget: Duration) -> Verdict {
    let deadline = Instant::now() + budget;
    let mut ops: Vec<&Operation> = history.iter().collect();
    ops.sort_by_key(|o| o.start);
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let known_total = ops.iter().filter(|o| o.end.is_some()).count();
    let mut seen: HashSet<(Vec<u64>, Val)> = HashSet::new();
    // Explicit DFS stack: (linearized bitset, value, known ops linearized).
    let mut stack: Vec<(Vec<u64>, Val, usize)> = vec![(vec![0; words], initial, 0)];
    let mut steps = 0u64;
    while let Some((done, state, known_done)) = stack.pop() {
        if known_done == known_total {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps.is_multiple_of(1024) && Instant::now() > deadline {
            return Verdict::Timeout;
        }
        if !seen.insert((done.clone(), state)) {
            continue;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // An op may go next only if it was invoked before every pending op completed.
        let min_end = (0..n)
            .filter(|&i| !is_done(i))
            .filter_map(|i| ops[i].end)
            .min()
            .unwrap_or(Duration::MAX);
        for i in 0..n {
            if is_done(i) {
                continue;
            }
            if ops[i].start > min_end {
                break;
            }
            let known = ops[i].end.is_some();
            if let Some(next) = step(state, &ops[i].call, known) {
                let mut after = done.clone();
                after[i / 64] |= 1 << (i % 64);
                stack.push((after, next, known_done + usize::from(known)));
            }
        }
    }
    Verdict::NotLinearizable
}

/// Checks each key's history on its own; returns the verdict per key.
pub fn check_keys(
    histories: &BTreeMap<String, Vec<Operation>>,
    budget_per_key: Duration,
) -> BTreeMap<String, Verdict> {
    histories
        .iter()
        .map(|(k, h)| (k.clone(), check(h, None, budget_per_key)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(start: u64, end: Option<u64>, call: Call) -> Operation {
        Operation {
            start: Duration::from_millis(start),
            end: end.map(Duration::from_millis),
            call,
        }
    }

    const BUDGET: Duration = Duration::from_secs(5);

    #[test]
    fn concurrent_write_and_reads_that_see_either_side_are_linearizable() {
        let h = vec![
            op(0, Some(10), Call::Write(1)),
            op(20, Some(40), Call::Write(2)),
            // Overlaps the second write: may see 1 or 2.
            op(25, Some(30), Call::Read(Some(2))),
            op(26, Some(35), Call::Read(Some(2))),
            op(
                50,
                Some(60),
                Call::Cas {
                    expected: Some(2),
                    new: 3,
                    ok: Some(true),
                },
            ),
            op(
                61,
                Some(62),
                Call::Cas {
                    expected: Some(2),
                    new: 4,
                    ok: Some(false),
                },
            ),
            op(70, Some(80), Call::Read(Some(3))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let h = vec![
            op(0, Some(10), Call::Write(1)),
            op(20, Some(30), Call::Write(2)),
            // Starts after write(2) completed, yet sees 1.
            op(40, Some(50), Call::Read(Some(1))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn a_read_flipping_back_is_caught() {
        let h = vec![
            op(0, Some(100), Call::Write(1)),
            op(10, Some(20), Call::Read(Some(1))),
            // After seeing 1, a later read sees the initial absence again.
            op(30, Some(40), Call::Read(None)),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn two_successful_cas_from_the_same_value_are_caught() {
        let h = vec![
            op(0, Some(5), Call::Write(1)),
            op(
                10,
                Some(20),
                Call::Cas {
                    expected: Some(1),
                    new: 2,
                    ok: Some(true),
                },
            ),
            op(
                11,
                Some(21),
                Call::Cas {
                    expected: Some(1),
                    new: 3,
                    ok: Some(true),
                },
            ),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn unknown_outcomes_may_apply_late_or_never() {
        // A write that timed out shows up long after; another never shows up.
        let h = vec![
            op(0, None, Call::Write(7)),
            op(5, None, Call::Write(8)),
            op(100, Some(110), Call::Read(None)),
            op(200, Some(210), Call::Read(Some(7))),
            op(
                220,
                None,
                Call::Cas {
                    expected: Some(7),
                    new: 9,
                    ok: None,
                },
            ),
            op(300, Some(310), Call::Read(Some(9))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
        // But it cannot apply before it was invoked.
        let h = vec![
            op(0, Some(10), Call::Read(Some(7))),
            op(20, None, Call::Write(7)),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn a_long_sequential_history_checks_quickly_and_a_planted_bad_read_is_found() {
        let mut h = Vec::new();
        let mut t = 0;
        for i in 0..2000 {
            h.push(op(t, Some(t + 3), Call::Write(i)));
            h.push(op(t + 1, Some(t + 5), Call::Read(Some(i))));
            t += 10;
        }
        let started = Instant::now();
        assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
        assert!(started.elapsed() < Duration::from_secs(2));
        h[3001].call = Call::Read(Some(5));
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn the_budget_bounds_a_hopeless_search() {
        // Many concurrent unknown writes and an impossible read: the search is exponential
        // without a bound.
        let mut h: Vec<Operation> = (0..40)
            .map(|i| op(i, None, Call::Write(i as i64)))
            .collect();
        h.push(op(1000, Some(1001), Call::Read(Some(-1))));
        let verdict = check(&h, None, Duration::from_millis(200));
        assert_ne!(verdict, Verdict::Linearizable);
    }
}
