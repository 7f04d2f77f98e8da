//! Structured logs: the node's bounded ring of recent records (`push logs`), the tracing layer
//! that fills it, the one place app `logging` records enter tracing, and the line format.
//!
//! Every record goes through `tracing`, so the node's stderr sink (text or JSON) and the ring
//! see the same events: node events at info and above, and app records (target `app`) tagged
//! with app, version, source (daemon unit, `route METHOD /path`, `eval`, `lambda`) and logger.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use push_protocol::LogRecord;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Records kept per node; older ones are dropped first.
pub const RING_CAPACITY: usize = 10_000;
/// Most records one `Logs` answer carries per node; a follower asks again with its cursor.
pub const MAX_PER_ANSWER: usize = 2_000;
/// The tracing target of app records.
pub const APP_TARGET: &str = "app";

/// A bounded, numbered ring of records.
pub struct Ring {
    inner: Mutex<RingInner>,
    capacity: usize,
}

struct RingInner {
    records: VecDeque<LogRecord>,
    next_seq: u64,
}

/// What a `Logs` request keeps.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// A daemon unit (and its partitions `name[i]`).
    pub daemon: Option<String>,
    /// The least severe level kept.
    pub level: Option<Level>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn keeps(&self, record: &LogRecord) -> bool {
        let daemon_ok = self.daemon.as_deref().is_none_or(|d| {
            record.source.as_deref().is_some_and(|s| {
                s == d || (s.starts_with(d) && s[d.len()..].starts_with('[') && s.ends_with(']'))
            })
        });
        let level_ok = self
            .level
            .is_none_or(|min| parse_level(&record.level).is_none_or(|l| l <= min));
        daemon_ok && level_ok
    }
}

/// "error", "warn"/"warning", "info", "debug", "trace" (any case).
pub fn parse_level(text: &str) -> Option<Level> {
    match text.to_ascii_lowercase().as_str() {
        "error" | "critical" => Some(Level::ERROR),
        "warn" | "warning" => Some(Level::WARN),
        "info" => Some(Level::INFO),
        "debug" => Some(Level::DEBUG),
        "trace" => Some(Level::TRACE),
        _ => None,
    }
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            inner: Mutex::new(RingInner {
                records: VecDeque::with_capacity(capacity.min(1024)),
                next_seq: 1,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Appends `record`, numbering it; drops the oldest record when full.
    pub fn push(&self, mut record: LogRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        record.seq = inner.next_seq;
        inner.next_seq += 1;
        if inner.records.len() == self.capacity {
            inner.records.pop_front();
        }
        inner.records.push_back(record);
    }

    /// Records with `seq > after` that `filter` keeps, oldest first, at most `limit`.
    pub fn after(&self, after: u64, filter: &Filter, limit: usize) -> Vec<LogRecord> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Sequence numbers are contiguous: skip straight to the first one after `after`.
        let first = inner.records.front().map_or(0, |r| r.seq);
        let skip = after.saturating_sub(first.saturating_sub(1)) as usize;
        inner
            .records
            .iter()
            .skip(skip)
            .filter(|r| filter.keeps(r))
            .take(limit)
            .cloned()
            .collect()
    }
}

static RING: OnceLock<Ring> = OnceLock::new();

/// This process's ring.
pub fn ring() -> &'static Ring {
    RING.get_or_init(|| Ring::new(RING_CAPACITY))
}

/// The tracing layer that copies events into [`ring`]. Which events is the caller's filter.
pub struct RingLayer;

#[derive(Default)]
struct Fields {
    message: String,
    app: Option<String>,
    version: Option<u64>,
    source: Option<String>,
    logger: Option<String>,
    other: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "version" {
            self.version = Some(value);
        } else {
            self.other
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let value = value.to_string();
        match field.name() {
            "message" => self.message = value,
            "app" => self.app = Some(value),
            "source" => self.source = Some(value),
            "logger" => self.logger = Some(value),
            name => self.other.push((name.to_string(), value)),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "app" => self.app = Some(format!("{value:?}")),
            "source" => self.source = Some(format!("{value:?}")),
            "logger" => self.logger = Some(format!("{value:?}")),
            name => self.other.push((name.to_string(), format!("{value:?}"))),
        }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        ring().push(LogRecord {
            node: 0,
            seq: 0,
            time_ms: crate::clock::now_ms(),
            level: level_name(*meta.level()).to_string(),
            target: meta.target().to_string(),
            message: fields.message,
            app: fields.app,
            version: fields.version,
            source: fields.source,
            logger: fields.logger,
            fields: fields.other,
        });
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Python `logging` level number to a tracing level (CRITICAL and ERROR are both errors).
pub fn level_of_python(levelno: i64) -> Level {
    match levelno {
        n if n >= 40 => Level::ERROR,
        n if n >= 30 => Level::WARN,
        n if n >= 20 => Level::INFO,
        n if n >= 10 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Logging of a Python worker process: its own events to stderr (which it shares with its
/// node), named by `label`; app `logging` records go to the node instead (see
/// `runtime::cluster::Cluster::log`).
pub fn init_worker(label: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PUSH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    tracing::debug!(worker = label, "python worker starting");
}

/// Emits one app `logging` record as a tracing event (target [`APP_TARGET`]).
pub fn app_event(
    levelno: i64,
    logger: &str,
    message: &str,
    app: Option<&str>,
    version: Option<u64>,
    source: Option<&str>,
) {
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "app",
                $level,
                app = app,
                version = version,
                source = source,
                logger = logger,
                "{message}"
            )
        };
    }
    match level_of_python(levelno) {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        Level::INFO => emit!(Level::INFO),
        Level::DEBUG => emit!(Level::DEBUG),
        Level::TRACE => emit!(Level::TRACE),
    }
}

/// `2026-11-23T03:22:53.123Z` for milliseconds since the Unix epoch (UTC).
pub fn format_time(ms: u64) -> String {
    let (year, month, day, h, m, s) = push_repl::views::utc_parts(ms);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

/// One record as `push logs` prints it: `time node level [app@version source] message`.
pub fn format_line(r: &LogRecord) -> String {
    let mut out = format!(
        "{} node{} {:<5} ",
        format_time(r.time_ms),
        r.node,
        r.level.to_ascii_uppercase()
    );
    match (&r.app, r.version, &r.source) {
        (None, None, None) => {
            let _ = write!(out, "{}: ", r.target);
        }
        (app, version, source) => {
            out.push('[');
            out.push_str(app.as_deref().unwrap_or("-"));
            if let Some(v) = version {
                let _ = write!(out, "@v{v}");
            }
            if let Some(s) = source {
                let _ = write!(out, " {s}");
            }
            out.push_str("] ");
        }
    }
    if let Some(logger) = &r.logger {
        let _ = write!(out, "{logger}: ");
    }
    out.push_str(&r.message);
    for (k, v) in &r.fields {
        let _ = write!(out, " {k}={v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: &str, source: Option<&str>, message: &str) -> LogRecord {
        LogRecord {
            node: 2,
            seq: 0,
            time_ms: 1_795_000_000_123,
            level: level.into(),
            target: "push::node".into(),
            message: message.into(),
            app: source.map(|_| "shop".to_string()),
            version: source.map(|_| 3),
            source: source.map(String::from),
            logger: None,
            fields: Vec::new(),
        }
    }

    #[test]
    fn ring_numbers_bounds_and_resumes() {
        let ring = Ring::new(3);
        for i in 1..=5 {
            ring.push(record("info", None, &format!("m{i}")));
        }
        let all = ring.after(0, &Filter::default(), 100);
        let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5], "the two oldest were dropped");
        assert_eq!(all[0].message, "m3");
        let rest = ring.after(4, &Filter::default(), 100);
        assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5]);
        assert!(ring.after(5, &Filter::default(), 100).is_empty());
        assert_eq!(ring.after(0, &Filter::default(), 2).len(), 2, "limit holds");
        assert_eq!(ring.after(u64::MAX, &Filter::default(), 2).len(), 0);
    }

    #[test]
    fn filters_by_daemon_and_level() {
        let ring = Ring::new(10);
        ring.push(record("info", Some("worker"), "a"));
        ring.push(record("warn", Some("worker[2]"), "b"));
        ring.push(record("error", Some("workers"), "c"));
        ring.push(record("debug", Some("worker"), "d"));
        ring.push(record("info", None, "e"));
        let of = |daemon: Option<&str>, level: Option<Level>| {
            ring.after(
                0,
                &Filter {
                    daemon: daemon.map(String::from),
                    level,
                },
                100,
            )
            .into_iter()
            .map(|r| r.message)
            .collect::<Vec<_>>()
        };
        assert_eq!(of(Some("worker"), None), vec!["a", "b", "d"]);
        assert_eq!(of(Some("worker"), Some(Level::INFO)), vec!["a", "b"]);
        assert_eq!(of(None, Some(Level::WARN)), vec!["b", "c"]);
        assert_eq!(of(None, None).len(), 5);
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("WARNING"), Some(Level::WARN));
        assert_eq!(parse_level("warn"), Some(Level::WARN));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(level_of_python(50), Level::ERROR);
        assert_eq!(level_of_python(20), Level::INFO);
        assert_eq!(level_of_python(5), Level::TRACE);
    }

    #[test]
    fn formats_times_and_lines() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_time(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        let mut app = record("info", Some("worker"), "tick 4");
        app.logger = Some("jobs".into());
        assert_eq!(
            format_line(&app),
            "2026-11-18T11:06:40.123Z node2 INFO  [shop@v3 worker] jobs: tick 4"
        );
        let mut node = record("warn", None, "peer slow");
        node.fields = vec![("peer".into(), "3".into())];
        assert_eq!(
            format_line(&node),
            "2026-11-18T11:06:40.123Z node2 WARN  push::node: peer slow peer=3"
        );
    }

    #[test]
    fn layer_captures_app_events_with_their_tags() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(RingLayer);
        let before = ring().after(0, &Filter::default(), usize::MAX).len();
        tracing::subscriber::with_default(subscriber, || {
            app_event(
                30,
                "shop.jobs",
                "low stock",
                Some("shop"),
                Some(7),
                Some("restock"),
            );
        });
        let got = ring().after(0, &Filter::default(), usize::MAX);
        assert!(got.len() > before);
        let last = got.iter().rev().find(|r| r.message == "low stock");
        let last = last.expect("the app record is in the ring");
        assert_eq!(last.level, "warn");
        assert_eq!(last.target, APP_TARGET);
        assert_eq!(last.app.as_deref(), Some("shop"));
        assert_eq!(last.version, Some(7));
        assert_eq!(last.source.as_deref(), Some("restock"));
        assert_eq!(last.logger.as_deref(), Some("shop.jobs"));
    }
}
