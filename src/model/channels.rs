//! Channels: each app's named event streams for server push. A publish appends an event with
//! the channel's next id (1, 2, 3, … per channel, never reused); the state keeps a bounded
//! history per channel — the last [`HISTORY_EVENTS`] events and at most [`HISTORY_BYTES`] of
//! data — from which every node serves its subscribers and their `Last-Event-ID` resumes.

use std::collections::{BTreeMap, VecDeque};

use push_protocol::{ErrorBody, ErrorCode, DEFAULT_APP};
use serde::{Deserialize, Serialize};

/// Most bytes one event's data may hold.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Most events a channel's history keeps (the oldest go first).
pub const HISTORY_EVENTS: usize = 1000;
/// Most bytes of data a channel's history keeps (the oldest events go first).
pub const HISTORY_BYTES: usize = 1024 * 1024;
/// Longest channel name.
pub const MAX_NAME: usize = 128;

/// One published event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    /// When it was published (the proposer's clock).
    pub time_ms: u64,
    pub data: String,
}

/// One channel: the id the next event gets and the history kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub next_id: u64,
    pub events: VecDeque<Event>,
    pub bytes: u64,
}

/// Every app's channels, by app and then channel name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    apps: BTreeMap<String, BTreeMap<String, Channel>>,
}

/// What a subscriber resuming after an id gets from the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since {
    /// The events after the id asked for that the history still holds, oldest first.
    pub events: Vec<Event>,
    /// Events after that id the history no longer holds: (first missed id, how many).
    pub missed: Option<(u64, u64)>,
    /// The channel's newest id (0 when nothing was ever published).
    pub last_id: u64,
}

/// Whether `name` can name a channel: 1 to [`MAX_NAME`] letters, digits, `_`, `-`, `.` or `:`
/// (it travels in a URL path unescaped).
pub fn check_name(name: &str) -> Result<(), ErrorBody> {
    let invalid = |m: String| Err(ErrorBody::new(ErrorCode::Invalid, m));
    if name.is_empty() {
        return invalid("the channel name is empty; name one, like `news`".into());
    }
    if name.len() > MAX_NAME {
        return invalid(format!(
            "the channel name is {} bytes long; use at most {MAX_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return invalid(format!(
            "the channel name {name:?} contains {c:?}; use letters, digits, `_`, `-`, `.` and `:` only"
        ));
    }
    Ok(())
}

/// Whether `data` fits in one event.
pub fn check_data(data: &str) -> Result<(), ErrorBody> {
    if data.len() > MAX_EVENT_BYTES {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "an event's data is limited to {MAX_EVENT_BYTES} bytes, this one has {}; publish a reference (a kv key, say) instead of the payload",
                data.len()
            ),
        ));
    }
    Ok(())
}

impl Channels {
    /// Appends an event to `app`'s channel `name` and returns its id. `known_app` says
    /// whether the code store knows `app` (the default app is always known).
    pub fn publish(
        &mut self,
        app: &str,
        name: &str,
        data: &str,
        time_ms: u64,
        known_app: bool,
    ) -> Result<u64, ErrorBody> {
        check_name(name)?;
        check_data(data)?;
        if !known_app && app != DEFAULT_APP {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no app called {app:?} was deployed; deploy it first (`push deploy`) or name another app"),
            ));
        }
        let channel = self
            .apps
            .entry(app.to_string())
            .or_default()
            .entry(name.to_string())
            .or_default();
        channel.next_id = channel.next_id.max(1);
        let id = channel.next_id;
        channel.next_id += 1;
        channel.bytes += data.len() as u64;
        channel.events.push_back(Event {
            id,
            time_ms,
            data: data.to_string(),
        });
        while channel.events.len() > HISTORY_EVENTS || channel.bytes > HISTORY_BYTES as u64 {
            match channel.events.pop_front() {
                Some(old) => channel.bytes -= old.data.len() as u64,
                None => break,
            }
        }
        Ok(id)
    }

    /// The newest event id of `app`'s channel `name` (0: nothing published yet).
    pub fn last_id(&self, app: &str, name: &str) -> u64 {
        self.channel(app, name)
            .map_or(0, |c| c.next_id.saturating_sub(1))
    }

    fn channel(&self, app: &str, name: &str) -> Option<&Channel> {
        self.apps.get(app)?.get(name)
    }

    /// The events of `app`'s channel `name` after id `after`, at most `limit` of them, and
    /// whether some after it were already dropped from the history.
    pub fn since(&self, app: &str, name: &str, after: u64, limit: usize) -> Since {
        let Some(channel) = self.channel(app, name) else {
            return Since {
                events: vec![],
                missed: None,
                last_id: 0,
            };
        };
        let last_id = channel.next_id.saturating_sub(1);
        let first_kept = channel.events.front().map_or(last_id + 1, |e| e.id);
        let missed = (after + 1 < first_kept).then(|| (after + 1, first_kept - after - 1));
        let skip = channel.events.partition_point(|e| e.id <= after);
        Since {
            events: channel
                .events
                .iter()
                .skip(skip)
                .take(limit)
                .cloned()
                .collect(),
            missed,
            last_id,
        }
    }

    /// Every channel as (app, name, newest id, events kept, bytes kept).
    pub fn list(&self) -> Vec<(String, String, u64, usize, u64)> {
        self.apps
            .iter()
            .flat_map(|(app, channels)| {
                channels.iter().map(move |(name, c)| {
                    (
                        app.clone(),
                        name.clone(),
                        c.next_id.saturating_sub(1),
                        c.events.len(),
                        c.bytes,
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_per_channel_and_history_is_bounded() {
        let mut c = Channels::default();
        for i in 0..(HISTORY_EVENTS + 5) {
            let id = c.publish("main", "news", &i.to_string(), 1, false).unwrap();
            assert_eq!(id, i as u64 + 1);
        }
        assert_eq!(c.publish("main", "other", "x", 1, false), Ok(1));
        assert_eq!(c.last_id("main", "news"), HISTORY_EVENTS as u64 + 5);
        let since = c.since("main", "news", 0, usize::MAX);
        assert_eq!(since.events.len(), HISTORY_EVENTS);
        assert_eq!(since.missed, Some((1, 5)));
        assert_eq!(since.events[0].id, 6);
        let tail = c.since("main", "news", HISTORY_EVENTS as u64 + 3, usize::MAX);
        assert_eq!(tail.missed, None);
        assert_eq!(
            tail.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![HISTORY_EVENTS as u64 + 4, HISTORY_EVENTS as u64 + 5]
        );
        assert!(c
            .since("main", "news", HISTORY_EVENTS as u64 + 5, 10)
            .events
            .is_empty());
    }

    #[test]
    fn the_byte_cap_drops_the_oldest() {
        let mut c = Channels::default();
        let big = "x".repeat(MAX_EVENT_BYTES);
        let n = HISTORY_BYTES / MAX_EVENT_BYTES + 3;
        for _ in 0..n {
            c.publish("main", "big", &big, 1, false).unwrap();
        }
        let since = c.since("main", "big", 0, usize::MAX);
        assert_eq!(since.events.len(), HISTORY_BYTES / MAX_EVENT_BYTES);
        assert_eq!(since.missed, Some((1, 3)));
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let mut c = Channels::default();
        let before = c.clone();
        assert_eq!(
            c.publish("main", "", "x", 1, false).unwrap_err().code,
            ErrorCode::Invalid
        );
        assert_eq!(
            c.publish("main", "a b", "x", 1, false).unwrap_err().code,
            ErrorCode::Invalid
        );
        let big = "x".repeat(MAX_EVENT_BYTES + 1);
        assert_eq!(
            c.publish("main", "n", &big, 1, false).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let unknown = c.publish("nosuch", "n", "x", 1, false).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::NotFound);
        assert!(unknown.message.contains("nosuch"));
        assert_eq!(c, before);
        assert_eq!(c.publish("shop", "n", "x", 1, true), Ok(1));
    }
}
