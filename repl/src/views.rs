//! Text views of tasks and timeseries shared by the REPL's meta commands and the `push` CLI:
//! the daemons table, a node's Python workers, the node registry, queue and timeseries stats,
//! timeseries points, and log tailing.

use std::time::Duration;

use push_protocol::{
    AuditEntry, Client, DaemonRow, LogLine, NodeEntry, Op, Reply, TsPoint, TsStat,
};

use crate::error::ReplError;

/// `push daemons` / `:daemons`.
pub fn daemon_table(rows: &[DaemonRow]) -> String {
    if rows.is_empty() {
        return "no daemons, partition handlers or schedules yet (declare them with @push.daemon, @push.every, series.handler)\n".into();
    }
    let mut out = format!(
        "{:<24} {:<10} {:>5} {:<10} {:>8} {:>6} {:>8}\n",
        "NAME", "KIND", "NODE", "STATE", "RESTARTS", "RUNS", "VERSION"
    );
    for r in rows {
        // An unplaced unit's state says why; the reason goes on a line of its own.
        let (state, why) = match r.state.strip_prefix("unplaced: ") {
            Some(why) => ("unplaced", Some(why)),
            None => (r.state.as_str(), None),
        };
        let name = if r.app == "main" {
            r.unit.clone()
        } else {
            format!("{}/{}", r.app, r.unit)
        };
        out.push_str(&format!(
            "{:<24} {:<10} {:>5} {:<10} {:>8} {:>6} {:>8}\n",
            name,
            r.kind,
            r.node.map_or("-".into(), |n| n.to_string()),
            state,
            r.restarts,
            r.runs,
            r.version.map_or("-".into(), |v| format!("v{v}")),
        ));
        if let Some(why) = why {
            out.push_str(&format!("    {why}\n"));
        }
        if let Some(error) = &r.error {
            let last = error.lines().last().unwrap_or_default();
            out.push_str(&format!(
                "    last crash: {last}  (`:tail {}` shows it)\n",
                r.unit
            ));
        }
    }
    out
}

/// `:workers`: one node's Python workers; `*` marks the one holding `session`.
pub fn workers_table(status: &push_protocol::NodeStatus, session: Option<u64>) -> String {
    if status.workers.is_empty() {
        return format!(
            "node {} reports no python workers (a release before workers?)\n",
            status.id
        );
    }
    let serving = status
        .serving
        .iter()
        .map(|(app, v)| format!("{app}@v{v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "node {} python workers (each serves {}):\n{:<4} {:>8} {:>8} {:>8} {:>5} {:>9} {:>9}  LAST EXIT\n",
        status.id,
        if serving.is_empty() { "nothing yet".to_string() } else { serving },
        "", "PID", "RSS MiB", "CPU s", "BUSY", "SESSIONS", "RESTARTS"
    );
    for w in &status.workers {
        let mine = session.is_some_and(|s| w.sessions.contains(&s));
        let name = match &w.pool {
            Some(pool) => format!("{}{pool}/w{}", if mine { "*" } else { " " }, w.slot),
            None => format!("{}w{}", if mine { "*" } else { " " }, w.slot),
        };
        let pid = if w.up {
            w.pid.to_string()
        } else {
            "down".into()
        };
        out.push_str(&format!(
            "{:<4} {:>8} {:>8} {:>8.1} {:>5} {:>9} {:>9}  {}{}\n",
            name,
            pid,
            w.rss_bytes >> 20,
            w.cpu_ms as f64 / 1000.0,
            w.busy,
            w.sessions.len(),
            w.restarts,
            w.last_exit.as_deref().unwrap_or("-"),
            if w.tasks { "  (runs daemons)" } else { "" },
        ));
    }
    out.push_str("`:use ID/W` moves this REPL to worker W of node ID (a new session); `:use ID/APP/W` to worker W of app APP's pool\n");
    out
}

/// The node registry: capabilities and liveness.
pub fn registry_table(entries: &[NodeEntry]) -> String {
    if entries.is_empty() {
        return "no node has registered yet (nodes register within a second of starting)\n".into();
    }
    let mut out = format!(
        "{:<4} {:<22} {:<6} {:>5} {:>9} {:<4} TAGS\n",
        "ID", "ADDRESS", "ALIVE", "CORES", "MEMORY", "GPU"
    );
    for e in entries {
        out.push_str(&format!(
            "{:<4} {:<22} {:<6} {:>5} {:>6} MB {:<4} {}\n",
            e.info.id,
            e.info.addr,
            if e.alive { "yes" } else { "DOWN" },
            e.info.cores,
            e.info.memory_mb,
            if e.info.gpu { "yes" } else { "no" },
            e.info.tags.join(",")
        ));
    }
    out
}

/// Every timeseries with its size and retention.
pub fn ts_table(stats: &[TsStat]) -> String {
    if stats.is_empty() {
        return "no timeseries yet\n".into();
    }
    let mut out = format!(
        "{:<24} {:>8} {:>10} {:>6} RETENTION\n",
        "SERIES", "POINTS", "APPENDED", "PARTS"
    );
    for s in stats {
        let mut keep = Vec::new();
        if let Some(ms) = s.config.max_age_ms {
            keep.push(format!("{}s", ms / 1000));
        }
        if let Some(n) = s.config.max_points {
            keep.push(format!("{n} points"));
        }
        out.push_str(&format!(
            "{:<24} {:>8} {:>10} {:>6} {}\n",
            push_protocol::realm::display(&s.name),
            s.points,
            s.appended,
            s.config.partitions,
            if keep.is_empty() {
                "all".into()
            } else {
                keep.join(", ")
            }
        ));
    }
    out
}

/// Points, one per line: seq, time (seconds), key, value.
pub fn points_text(points: &[TsPoint]) -> String {
    points
        .iter()
        .map(|p| {
            format!(
                "  #{:<7} {:>14.3}  {:<12} {}\n",
                p.seq,
                p.t_ms as f64 / 1000.0,
                p.key.as_deref().unwrap_or("-"),
                p.value
            )
        })
        .collect()
}

/// Prints daemon `name`'s log lines; with `follow`, keeps polling until `stop` resolves.
pub async fn tail(
    client: &Client,
    app: Option<String>,
    name: &str,
    follow: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ReplError> {
    let mut after: Vec<(u64, u64)> = Vec::new();
    let mut printed_any = false;
    tokio::pin!(stop);
    loop {
        let op = Op::Tail {
            app: app.clone(),
            name: name.to_string(),
            after: after.clone(),
            here: false,
        };
        let lines: Vec<LogLine> = match client.call(op).await {
            Ok(Reply::Lines(lines)) => lines,
            Ok(other) => return Err(ReplError::Unexpected(format!("{other:?}"))),
            Err(e) => return Err(ReplError::Node(e)),
        };
        for l in &lines {
            println!("[node {}] {}", l.node, l.text);
            printed_any = true;
            match after.iter_mut().find(|(n, _)| *n == l.node) {
                Some(entry) => entry.1 = entry.1.max(l.seq),
                None => after.push((l.node, l.seq)),
            }
        }
        if !follow {
            if !printed_any {
                println!("{name} has not logged anything yet");
            }
            return Ok(());
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}

/// Year, month, day, hour, minute, second (UTC) of milliseconds since the Unix epoch.
pub fn utc_parts(ms: u64) -> (i64, i64, i64, u64, u64, u64) {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A UTC time as "2026-11-23 04:05:06Z".
pub fn format_time(ms: u64) -> String {
    let (year, month, d, h, m, s) = utc_parts(ms);
    format!("{year:04}-{month:02}-{d:02} {h:02}:{m:02}:{s:02}Z")
}

/// Audit entries, one per line (multi-line details indented below).
pub fn audit_text(entries: &[AuditEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let app = e.app.as_deref().map_or(String::new(), |a| format!(" {a}"));
        let mut lines = e.detail.lines();
        let first = lines.next().unwrap_or_default();
        out.push_str(&format!(
            "#{:<5} {} node {} {:<9}{app}  {first}\n        by {}\n",
            e.seq,
            format_time(e.time_ms),
            e.node,
            e.action,
            e.who
        ));
        for line in lines.take(20) {
            out.push_str(&format!("        | {line}\n"));
        }
    }
    out
}

/// Prints the newest `limit` audit entries (of one `action` if given), then with `follow`
/// new ones as they are recorded, until `stop`.
pub async fn audit(
    client: &Client,
    action: Option<String>,
    limit: usize,
    follow: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ReplError> {
    let mut after = 0;
    let mut first = true;
    tokio::pin!(stop);
    loop {
        let op = Op::Audit {
            after,
            limit: if after == 0 { limit } else { 1000 },
            action: action.clone(),
        };
        let entries = match client.call(op).await {
            Ok(Reply::Audit(entries)) => entries,
            Ok(other) => return Err(ReplError::Unexpected(format!("{other:?}"))),
            Err(e) => return Err(ReplError::Node(e)),
        };
        if first && entries.is_empty() {
            println!("the audit log is empty (deploys, rollbacks, restarts, evals and hot-patches land here)");
        }
        first = false;
        print!("{}", audit_text(&entries));
        after = entries.last().map_or(after, |e| e.seq).max(after);
        if !follow {
            return Ok(());
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The queue table shared by `:queues` and `push queues`.
pub fn queue_table(stats: &[push_protocol::QueueStat]) -> String {
    if stats.is_empty() {
        return "no queues yet\n".into();
    }
    let mut out = format!(
        "{:<24} {:>8} {:>8} {:>10} {:>10}\n",
        "QUEUE", "READY", "LEASED", "PUTS", "ACKS"
    );
    for s in stats {
        out.push_str(&format!(
            "{:<24} {:>8} {:>8} {:>10} {:>10}\n",
            push_protocol::realm::display(&s.name),
            s.ready,
            s.leased,
            s.puts,
            s.acks
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_rows_show_crashes() {
        let rows = vec![DaemonRow {
            app: "main".into(),
            unit: "worker".into(),
            kind: "daemon".into(),
            node: Some(2),
            state: "backoff".into(),
            restarts: 3,
            runs: 4,
            version: Some(7),
            error: Some("Traceback...\nValueError: boom".into()),
        }];
        let text = daemon_table(&rows);
        assert!(text.contains("worker") && text.contains("backoff") && text.contains("v7"));
        assert!(text.contains("last crash: ValueError: boom"));
    }
}
