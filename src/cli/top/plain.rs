//! The snapshot as plain text, for `push top --once` (scripts, logs, no terminal needed): every
//! pane as an aligned table under a heading, with the same columns as on screen
//! ([`super::columns`]), each sized to its content. No terminal and no IO here.

use std::fmt::Write;

use super::collect::Snapshot;
use super::columns::{self, Column};

/// Every pane of `snap`, one table each, or why a pane is unavailable.
pub fn plain(snap: &Snapshot) -> String {
    let mut out = String::new();
    let leader = snap.leader.map_or("none".to_string(), |l| l.to_string());
    let _ = writeln!(out, "leader {leader}  term {}", snap.term);
    if let Some(e) = &snap.error {
        let _ = writeln!(out, "{e}");
    }
    table(
        &mut out,
        "NODES",
        &columns::NODES,
        snap.nodes.iter().map(columns::node_cells).collect(),
    );
    table(
        &mut out,
        "PYTHON WORKERS (* runs the daemons)",
        &columns::WORKERS,
        columns::worker_rows(snap),
    );
    let queues = snap
        .queues
        .as_ref()
        .map(|q| q.iter().map(columns::queue_cells).collect());
    section(&mut out, "queues", &columns::QUEUES, queues);
    let daemons = snap
        .daemons
        .as_ref()
        .map(|d| d.iter().map(columns::daemon_cells).collect());
    section(&mut out, "daemons", &columns::DAEMONS, daemons);
    let versions = snap.versions.as_ref().map(|_| columns::version_rows(snap));
    section(&mut out, "versions", &columns::VERSIONS, versions);
    let audit = snap
        .audit
        .as_ref()
        .map(|a| a.iter().map(columns::audit_cells).collect());
    section(&mut out, "audit", &columns::AUDIT, audit);
    out
}

/// A table headed by `name` in capitals, or "name: unavailable — why".
fn section(
    out: &mut String,
    name: &str,
    columns: &[Column],
    rows: Result<Vec<Vec<String>>, &String>,
) {
    match rows {
        Ok(rows) => table(out, &name.to_uppercase(), columns, rows),
        Err(e) => {
            let _ = writeln!(out, "\n{name}: unavailable — {e}");
        }
    }
}

/// `rows` under `columns`' headers, each column as wide as its widest cell, two spaces apart.
fn table(out: &mut String, title: &str, columns: &[Column], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "\n{title}");
    let mut widths: Vec<usize> = columns.iter().map(|c| c.head.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "{}",
        line(columns.iter().map(|c| c.head.to_string()).collect())
    );
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
}
