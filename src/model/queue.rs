//! Replicated queues: put, take with a lease, ack. An item taken and not acked before its
//! lease ends is offered again; while leased it is never handed to anyone else.
//!
//! Lease times are absolute milliseconds stamped by the proposing node (the command's time),
//! so expiry is decided identically on every replica.

use std::collections::{BTreeMap, VecDeque};

use push_protocol::Value;
use serde::{Deserialize, Serialize};

/// One item.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    pub value: Value,
    /// How many times it has been handed out.
    pub deliveries: u32,
}

/// A queue: ready items in order, and leased ones by id with their lease end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Queue {
    ready: VecDeque<Item>,
    leased: BTreeMap<u64, (Item, u64)>,
    next_id: u64,
    pub puts: u64,
    pub acks: u64,
}

impl Queue {
    /// Returns expired leases to the front of the queue (oldest id first).
    fn expire(&mut self, now_ms: u64) {
        let expired: Vec<u64> = self
            .leased
            .iter()
            .filter(|(_, (_, until))| *until <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired.into_iter().rev() {
            if let Some((item, _)) = self.leased.remove(&id) {
                self.ready.push_front(item);
            }
        }
    }

    pub fn put(&mut self, values: &[Value]) -> Vec<u64> {
        values
            .iter()
            .map(|value| {
                self.next_id += 1;
                self.puts += 1;
                self.ready.push_back(Item {
                    id: self.next_id,
                    value: value.clone(),
                    deliveries: 0,
                });
                self.next_id
            })
            .collect()
    }

    /// Leases the first ready item until `now_ms + lease_ms`.
    pub fn take(&mut self, now_ms: u64, lease_ms: u64) -> Option<Item> {
        self.expire(now_ms);
        let mut item = self.ready.pop_front()?;
        item.deliveries += 1;
        self.leased
            .insert(item.id, (item.clone(), now_ms.saturating_add(lease_ms)));
        Some(item)
    }

    /// Acknowledges a leased item; false when it is not leased (never taken, acked, or its
    /// lease ran out and it went back to the queue).
    pub fn ack(&mut self, id: u64, now_ms: u64) -> bool {
        self.expire(now_ms);
        if self.leased.remove(&id).is_some() {
            self.acks += 1;
            true
        } else {
            false
        }
    }

    /// Items ready now, as of `now_ms` (expired leases count as ready).
    pub fn ready_count(&self, now_ms: u64) -> usize {
        self.ready.len()
            + self
                .leased
                .values()
                .filter(|(_, until)| *until <= now_ms)
                .count()
    }

    pub fn leased_count(&self, now_ms: u64) -> usize {
        self.leased
            .values()
            .filter(|(_, until)| *until > now_ms)
            .count()
    }

    /// The first `n` ready items, without taking them.
    pub fn peek(&self, n: usize) -> Vec<Item> {
        self.ready.iter().take(n).cloned().collect()
    }
}

/// All named queues.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Queues {
    queues: BTreeMap<String, Queue>,
    /// The latest command time seen: proposers' clocks differ, so lease time never goes back.
    clock: u64,
}

impl Queues {
    /// The queue clock after a command stamped `time_ms`: monotonic across proposers.
    pub fn tick(&mut self, time_ms: u64) -> u64 {
        self.clock = self.clock.max(time_ms);
        self.clock
    }

    pub fn clock(&self) -> u64 {
        self.clock
    }

    pub fn get(&self, name: &str) -> Option<&Queue> {
        self.queues.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> &mut Queue {
        self.queues.entry(name.to_string()).or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = (&String, &Queue)> {
        self.queues.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ack_and_redelivery() {
        let mut q = Queue::default();
        q.put(&[Value::Int(1), Value::Int(2)]);
        let a = q.take(1_000, 100).unwrap();
        assert_eq!(a.value, Value::Int(1));
        // While leased, the next take gets the other item, then nothing.
        assert_eq!(q.take(1_050, 100).unwrap().value, Value::Int(2));
        assert!(q.take(1_060, 100).is_none());
        // Item 1's lease runs out: it comes back, delivered a second time.
        let again = q.take(1_100, 100).unwrap();
        assert_eq!((again.id, again.deliveries), (a.id, 2));
        // An ack by id while it is leased again: at-least-once delivery.
        assert!(q.ack(a.id, 1_120));
        assert!(!q.ack(a.id, 1_120), "acked twice");
        assert_eq!((q.ready_count(1_120), q.leased_count(1_120)), (0, 1));
        assert!(q.ack(2, 1_130), "item 2 is leased until 1150");
        assert_eq!(q.acks, 2);
        assert!(q.take(5_000, 100).is_none());
    }
}
