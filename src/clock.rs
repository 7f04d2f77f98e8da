//! The wall clock, read in one place: milliseconds since the Unix epoch.
//!
//! A leaf like the counters and the log ring: anyone may read it except `model`, whose apply
//! takes times from the command (stamped by the proposer) and never reads a clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
