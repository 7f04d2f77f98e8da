//! Each pane's columns, typed once: a [`Column`] list (header, width on screen, which columns
//! a narrow terminal drops) next to the function that formats one row into its cells. The
//! drawing ([`super::draw`]) and the plain text of `--once` ([`super::plain`]) both read
//! these, so a column is added or renamed in one place. Pure formatting: no ratatui here.

use push_protocol::{AuditEntry, DaemonRow};
use push_repl::views::format_time;

use super::collect::{NodeRow, QueueRow, Snapshot};

/// One column of a pane.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub head: &'static str,
    /// Cells on screen (the plain text sizes each column to its content instead).
    pub width: u16,
    /// Takes the width the other columns leave (and at least `width`).
    pub fill: bool,
    /// When a narrow terminal drops it: highest number first, so 0 is kept longest. None:
    /// never dropped (the table narrows it instead).
    pub drop: Option<u8>,
}

const fn fixed(head: &'static str, width: u16) -> Column {
    Column {
        head,
        width,
        fill: false,
        drop: None,
    }
}

const fn fill(head: &'static str, width: u16) -> Column {
    Column {
        fill: true,
        ..fixed(head, width)
    }
}

/// A nodes column, dropped at this priority on a narrow terminal.
const fn node(head: &'static str, width: u16, drop: u8) -> Column {
    Column {
        drop: Some(drop),
        ..fixed(head, width)
    }
}

/// Narrow terminals drop the highest priorities first, so id, role and address stay readable
/// at 80 columns. SERVING also holds a DOWN node's reason: it takes the remaining width.
pub const NODES: [Column; 11] = [
    node("ID", 4, 0),
    node("ADDRESS", 21, 1),
    node("ROLE", 9, 0),
    node("TERM", 5, 5),
    node("COMMIT", 8, 6),
    node("APPLIED", 8, 3),
    node("LAG", 5, 2),
    node("RSS", 8, 4),
    node("CPU%", 6, 3),
    Column {
        fill: true,
        ..node("SERVING", 12, 2)
    },
    node("UPTIME", 7, 7),
];

pub fn node_cells(n: &NodeRow) -> Vec<String> {
    match &n.status {
        Ok(s) => {
            let serving = if s.serving.is_empty() {
                "-".to_string()
            } else {
                s.serving
                    .iter()
                    .map(|(app, v)| format!("{app}@v{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                s.id.to_string(),
                n.addr.clone(),
                s.role.clone(),
                s.term.to_string(),
                opt(s.committed_index),
                opt(s.applied_index),
                opt(n.lag),
                bytes(s.rss_bytes),
                n.cpu_percent.map_or("-".into(), |c| format!("{c:.1}")),
                serving,
                uptime(s.uptime_ms),
            ]
        }
        Err(e) => vec![
            n.id.to_string(),
            n.addr.clone(),
            "DOWN".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            // The address is in its own column already, and the hint is for other commands.
            e.strip_prefix(&format!("cannot connect to {}: ", n.addr))
                .and_then(|rest| rest.split("; ").next())
                .unwrap_or(e)
                .to_string(),
            String::new(),
        ],
    }
}

/// The workers table under the nodes: one row per Python worker of every node that answered.
pub const WORKERS: [Column; 9] = [
    fixed("NODE", 5),
    fixed("WORKER", 7),
    fixed("PID", 8),
    fixed("RSS", 9),
    fixed("CPU%", 6),
    fixed("BUSY", 5),
    fixed("SESS", 5),
    fixed("RESTARTS", 9),
    fill("LAST EXIT", 20),
];

/// Rows of [`WORKERS`]: every worker of every node that answered, in node order.
pub fn worker_rows(snap: &Snapshot) -> Vec<Vec<String>> {
    snap.nodes
        .iter()
        .filter_map(|n| n.status.as_ref().ok().map(|s| (n, s)))
        .flat_map(|(n, s)| {
            s.workers.iter().enumerate().map(move |(i, w)| {
                vec![
                    s.id.to_string(),
                    format!(
                        "{}w{}{}",
                        w.pool.as_ref().map_or(String::new(), |p| format!("{p}/")),
                        w.slot,
                        if w.tasks { "*" } else { "" }
                    ),
                    if w.up {
                        w.pid.to_string()
                    } else {
                        "down".into()
                    },
                    bytes(w.rss_bytes),
                    n.worker_cpu
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or("-".into(), |c| format!("{c:.1}")),
                    w.busy.to_string(),
                    w.sessions.len().to_string(),
                    w.restarts.to_string(),
                    w.last_exit.clone().unwrap_or_else(|| "-".into()),
                ]
            })
        })
        .collect()
}

pub const QUEUES: [Column; 7] = [
    fill("QUEUE", 16),
    fixed("READY", 8),
    fixed("LEASED", 8),
    fixed("PUTS", 10),
    fixed("ACKS", 10),
    fixed("PUT/S", 9),
    fixed("ACK/S", 9),
];

pub fn queue_cells(q: &QueueRow) -> Vec<String> {
    vec![
        push_protocol::realm::display(&q.stat.name),
        q.stat.ready.to_string(),
        q.stat.leased.to_string(),
        q.stat.puts.to_string(),
        q.stat.acks.to_string(),
        format!("{:.1}", q.put_rate),
        format!("{:.1}", q.ack_rate),
    ]
}

pub const DAEMONS: [Column; 7] = [
    fixed("APP", 12),
    fixed("UNIT", 20),
    fixed("KIND", 10),
    fixed("NODE", 9),
    fixed("STATE", 9),
    fixed("RESTARTS", 9),
    fill("LAST ERROR", 20),
];

pub fn daemon_cells(d: &DaemonRow) -> Vec<String> {
    vec![
        d.app.clone(),
        d.unit.clone(),
        d.kind.clone(),
        d.node.map_or("unplaced".into(), |n| n.to_string()),
        d.state.clone(),
        d.restarts.to_string(),
        d.error
            .as_deref()
            .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .to_string(),
    ]
}

/// The VERSION cell of an app's HEAD starts with `*`.
pub const VERSIONS: [Column; 6] = [
    fixed("APP", 12),
    fixed("VERSION", 7),
    fixed("TIME", 20),
    fixed("AUTHOR", 14),
    fixed("FILES", 5),
    fill("MESSAGE", 10),
];

/// Every app's versions, newest first within an app; none when versions are unavailable.
pub fn version_rows(snap: &Snapshot) -> Vec<Vec<String>> {
    let Ok(apps) = &snap.versions else {
        return Vec::new();
    };
    apps.iter()
        .flat_map(|a| {
            a.versions.iter().map(move |v| {
                let head = if Some(v.number) == a.head { "*" } else { " " };
                vec![
                    a.app.clone(),
                    format!("{head} v{}", v.number),
                    format_time(v.time_ms),
                    v.author.clone(),
                    v.files.to_string(),
                    v.message.clone(),
                ]
            })
        })
        .collect()
}

pub const AUDIT: [Column; 7] = [
    fixed("SEQ", 6),
    fixed("TIME", 20),
    fixed("NODE", 4),
    fixed("WHO", 20),
    fixed("ACTION", 9),
    fixed("APP", 10),
    fill("DETAIL", 10),
];

pub fn audit_cells(e: &AuditEntry) -> Vec<String> {
    vec![
        e.seq.to_string(),
        format_time(e.time_ms),
        e.node.to_string(),
        e.who.clone(),
        e.action.clone(),
        e.app.clone().unwrap_or_default(),
        e.detail.lines().next().unwrap_or("").to_string(),
    ]
}

/// Which of `columns` fit in `width` (1 cell between columns, 2 for borders), in order:
/// droppable columns go, highest priority number first, until the rest fit or one is left.
pub fn fit(columns: &[Column], width: u16) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..columns.len()).collect();
    let total =
        |keep: &[usize]| -> u16 { keep.iter().map(|i| columns[*i].width + 1).sum::<u16>() + 2 };
    while total(&keep) > width && keep.len() > 1 {
        let worst = keep
            .iter()
            .copied()
            .filter_map(|i| columns[i].drop.map(|p| (p, i)))
            .max();
        let Some((_, worst)) = worst else {
            break;
        };
        keep.retain(|i| *i != worst);
    }
    keep
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n == 0 {
        "-".into()
    } else if (n as f64) < 1024.0 * MIB {
        format!("{:.0} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} GiB", n as f64 / MIB / 1024.0)
    }
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}
