//! Replicated timeseries: points (time, optional partition key, value) in append order,
//! retention by age and by count, and per-handler cursors for partitioned handlers.
//!
//! Retention uses the command's time (stamped by the proposer), so every replica drops the
//! same points. A point retention drops before a partition handler has processed it moves to
//! a backlog only handlers read (at most [`HANDLER_BACKLOG`] points), so a burst larger than
//! `max_points` still reaches every handler that has started. Partition of a key is FNV-1a of its bytes modulo the series' partition count:
//! stable across nodes and Rust versions.

use std::collections::{BTreeMap, VecDeque};

use push_protocol::{TsConfig, TsPoint, TsStat, Value};
use serde::{Deserialize, Serialize};

/// Most points kept for handlers after retention dropped them (a handler that is gone for
/// good must not make the series grow without end).
pub const HANDLER_BACKLOG: usize = 100_000;

/// Partitions of a series nobody configured.
pub const DEFAULT_PARTITIONS: u32 = 4;

fn default_config() -> TsConfig {
    TsConfig {
        max_age_ms: None,
        max_points: None,
        partitions: DEFAULT_PARTITIONS,
    }
}

/// One series.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Series {
    pub config: TsConfig,
    points: VecDeque<TsPoint>,
    next_seq: u64,
    pub appended: u64,
    /// How far each partition handler unit has processed.
    cursors: BTreeMap<String, u64>,
    /// Points dropped by retention that a handler has not processed yet, oldest first.
    #[serde(deserialize_with = "push_protocol::format::added_in_2")]
    backlog: VecDeque<TsPoint>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            config: default_config(),
            points: VecDeque::new(),
            next_seq: 0,
            appended: 0,
            cursors: BTreeMap::new(),
            backlog: VecDeque::new(),
        }
    }
}

/// The partition a key belongs to among `partitions`.
pub fn partition_of(key: Option<&str>, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.unwrap_or("").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

impl Series {
    /// Appends points (a missing time is `now_ms`), then applies retention. Returns their seqs.
    pub fn append(
        &mut self,
        points: &[(Option<i64>, Option<String>, Value)],
        now_ms: u64,
    ) -> Vec<u64> {
        let seqs = points
            .iter()
            .map(|(t, key, value)| {
                self.next_seq += 1;
                self.appended += 1;
                self.points.push_back(TsPoint {
                    seq: self.next_seq,
                    t_ms: t.unwrap_or(now_ms as i64),
                    key: key.clone(),
                    value: value.clone(),
                });
                self.next_seq
            })
            .collect();
        self.retain(now_ms);
        seqs
    }

    /// Drops points older than the age limit (from the front, in append order) and beyond
    /// the count limit.
    pub fn retain(&mut self, now_ms: u64) {
        if let Some(max_age) = self.config.max_age_ms {
            let oldest = now_ms as i64 - max_age as i64;
            while self.points.front().is_some_and(|p| p.t_ms < oldest) {
                self.drop_front();
            }
        }
        if let Some(max) = self.config.max_points {
            while self.points.len() as u64 > max {
                self.drop_front();
            }
        }
    }

    /// Drops the oldest point, keeping it in the backlog while a handler still needs it.
    fn drop_front(&mut self) {
        let Some(p) = self.points.pop_front() else {
            return;
        };
        if self.pending(&p) {
            self.backlog.push_back(p);
            if self.backlog.len() > HANDLER_BACKLOG {
                self.backlog.pop_front();
            }
        }
    }

    /// Whether a started handler of `p`'s partition has not processed it yet. A handler unit
    /// is `name[i]` for partition i; it starts by recording its cursor.
    fn pending(&self, p: &TsPoint) -> bool {
        let partition = partition_of(p.key.as_deref(), self.config.partitions);
        self.cursors.iter().any(|(unit, cursor)| {
            *cursor < p.seq && unit_partition(unit).is_some_and(|u| u == partition)
        })
    }

    /// Points with `t0 <= t < t1`, in append order.
    pub fn range(&self, t0: Option<i64>, t1: Option<i64>) -> Vec<TsPoint> {
        self.points
            .iter()
            .filter(|p| t0.is_none_or(|t0| p.t_ms >= t0) && t1.is_none_or(|t1| p.t_ms < t1))
            .cloned()
            .collect()
    }

    /// The last `n` points.
    pub fn last(&self, n: usize) -> Vec<TsPoint> {
        let skip = self.points.len().saturating_sub(n);
        self.points.iter().skip(skip).cloned().collect()
    }

    /// Up to `limit` points of partition `partition` with a seq above `after`.
    /// Up to `limit` points of partition `partition` with a seq above `after`, the backlog
    /// retention left for handlers first.
    pub fn after(&self, partition: u32, after: u64, limit: usize) -> Vec<TsPoint> {
        let from_backlog = self.backlog.partition_point(|p| p.seq <= after);
        let start = self.points.partition_point(|p| p.seq <= after);
        self.backlog
            .iter()
            .skip(from_backlog)
            .chain(self.points.iter().skip(start))
            .filter(|p| partition_of(p.key.as_deref(), self.config.partitions) == partition)
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn cursor(&self, unit: &str) -> u64 {
        self.cursors.get(unit).copied().unwrap_or(0)
    }

    /// Moves a handler's cursor forward (never back).
    pub fn advance(&mut self, unit: &str, upto: u64) {
        let c = self.cursors.entry(unit.to_string()).or_default();
        *c = (*c).max(upto);
        if !self.backlog.is_empty() {
            let backlog = std::mem::take(&mut self.backlog);
            self.backlog = backlog.into_iter().filter(|p| self.pending(p)).collect();
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last_seq(&self) -> u64 {
        self.next_seq
    }
}

/// The partition a handler unit `name[i]` works on.
fn unit_partition(unit: &str) -> Option<u32> {
    unit.strip_suffix(']')?.rsplit_once('[')?.1.parse().ok()
}

/// Every series by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timeseries {
    series: BTreeMap<String, Series>,
}

impl Timeseries {
    pub fn get(&self, name: &str) -> Option<&Series> {
        self.series.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> &mut Series {
        self.series.entry(name.to_string()).or_default()
    }

    pub fn stats(&self) -> Vec<TsStat> {
        self.series
            .iter()
            .map(|(name, s)| TsStat {
                name: name.clone(),
                points: s.points.len() as u64,
                appended: s.appended,
                first_ms: s.points.front().map(|p| p.t_ms),
                last_ms: s.points.back().map(|p| p.t_ms),
                config: s.config.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: i64, key: &str) -> (Option<i64>, Option<String>, Value) {
        (Some(t), Some(key.to_string()), Value::Int(t))
    }

    #[test]
    fn range_last_and_retention() {
        let mut s = Series::default();
        s.config.max_age_ms = Some(1_000);
        s.config.max_points = Some(5);
        let seqs = s.append(&[point(100, "a"), point(200, "b"), point(300, "a")], 500);
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(s.range(Some(150), Some(300)).len(), 1);
        assert_eq!(s.range(None, None).len(), 3);
        assert_eq!(s.last(2)[0].t_ms, 200);
        // Age: at now=1250 the point at 100 and 200 are older than 1 s.
        s.append(&[point(1_200, "c")], 1_250);
        assert_eq!(
            s.range(None, None)
                .iter()
                .map(|p| p.t_ms)
                .collect::<Vec<_>>(),
            vec![300, 1_200]
        );
        // Count: only the newest 5 stay.
        s.append(
            &(0..6).map(|i| point(1_300 + i, "d")).collect::<Vec<_>>(),
            1_310,
        );
        assert_eq!(s.len(), 5);
        assert_eq!(s.last(1)[0].t_ms, 1_305);
        assert_eq!(s.appended, 10);
    }

    #[test]
    fn partitions_split_by_key() {
        let mut s = Series::default();
        let pts: Vec<_> = (0..40)
            .map(|i| point(i, &format!("sensor-{}", i % 8)))
            .collect();
        s.append(&pts, 0);
        let total: usize = (0..DEFAULT_PARTITIONS)
            .map(|p| s.after(p, 0, 1_000).len())
            .sum();
        assert_eq!(total, 40);
        // The same key always lands in the same partition.
        let p = partition_of(Some("sensor-3"), 4);
        assert!(s
            .after(p, 0, 1_000)
            .iter()
            .any(|x| x.key.as_deref() == Some("sensor-3")));
        assert_eq!(s.after(p, 40, 10).len(), 0);
        s.advance("h[0]", 7);
        s.advance("h[0]", 3);
        assert_eq!(s.cursor("h[0]"), 7);
    }

    #[test]
    fn a_series_stored_in_format_1_loads_without_a_backlog() {
        // The shape format 1 wrote (no backlog), as a release before the backlog encoded it.
        #[derive(Serialize)]
        struct Old {
            config: TsConfig,
            points: VecDeque<TsPoint>,
            next_seq: u64,
            appended: u64,
            cursors: BTreeMap<String, u64>,
        }
        let old = Old {
            config: default_config(),
            points: VecDeque::new(),
            next_seq: 7,
            appended: 7,
            cursors: BTreeMap::from([("h[0]".to_string(), 5)]),
        };
        let bytes = push_protocol::format::encode(1, &(old, 42u64)).unwrap();
        let (series, after): (Series, u64) = push_protocol::format::decode(1, &bytes).unwrap();
        assert_eq!((series.next_seq, series.cursor("h[0]"), after), (7, 5, 42));
        assert!(series.backlog.is_empty());

        // Format 2 keeps the backlog.
        let mut s = Series::default();
        s.config.max_points = Some(1);
        s.config.partitions = 1;
        s.advance("h[0]", 0);
        s.append(&[point(1, "a"), point(2, "a")], 0);
        assert_eq!(s.backlog.len(), 1);
        let bytes = push_protocol::format::encode(2, &s).unwrap();
        let back: Series = push_protocol::format::decode(2, &bytes).unwrap();
        assert_eq!(back.backlog.len(), 1);
        assert_eq!(
            push_protocol::format::decoding_version(),
            push_protocol::FORMAT_VERSION
        );
    }

    #[test]
    fn started_handlers_see_points_retention_dropped() {
        let mut s = Series::default();
        s.config.max_points = Some(5);
        s.config.partitions = 2;
        // Partition 0's handler has started; partition 1's has not.
        s.advance("h[0]", 0);
        let pts: Vec<_> = (0..20).map(|i| point(i, &format!("k{}", i % 4))).collect();
        s.append(&pts, 0);
        assert_eq!(s.len(), 5, "retention still keeps 5 for readers");
        let p0: Vec<_> = pts
            .iter()
            .filter(|(_, k, _)| partition_of(k.as_deref(), 2) == 0)
            .collect();
        let seen = s.after(0, 0, 1_000);
        assert_eq!(
            seen.len(),
            p0.len(),
            "partition 0's handler sees every point"
        );
        assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
        // Processing them empties the backlog; unstarted partitions keep nothing extra.
        let last = seen.last().expect("points").seq;
        s.advance("h[0]", last);
        assert!(s.backlog.is_empty());
        assert_eq!(s.after(0, last, 1_000).len(), 0);
    }
}
