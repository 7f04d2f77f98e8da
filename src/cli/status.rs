//! `push status`: every node's view, gathered by asking each member directly.

use std::time::Duration;

use push_protocol::{Client, NodeStatus, Op, Reply};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Any node of the cluster
    #[arg(value_name = "HOST:PORT")]
    pub node: Option<String>,
    #[command(flatten)]
    pub target: Target,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// One node's status, within 3 s; the error says why it could not be had.
pub async fn status_of(addr: &str, token: &str) -> Result<NodeStatus, String> {
    let fetch = async {
        let client = Client::connect(addr, token)
            .await
            .map_err(|e| e.to_string())?;
        match client.call(Op::Status).await.map_err(|e| e.to_string())? {
            Reply::Status(s) => Ok(*s),
            other => Err(format!("unexpected reply {other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(3), fetch)
        .await
        .unwrap_or_else(|_| Err("no answer within 3 s".into()))
}

/// Who this token is to the node at `addr` (None from a node too old to say).
pub async fn whoami(addr: &str, token: &str) -> Option<push_protocol::Identity> {
    let ask = async {
        let client = Client::connect(addr, token).await.ok()?;
        match client.call(Op::WhoAmI).await.ok()? {
            Reply::WhoAmI(me) => Some(me),
            _ => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let candidates = args.target.candidates(args.node.as_deref())?;
    let (token, _) = args
        .target
        .token_for(candidates.first().map(String::as_str))?;
    let mut first = Err("no node address".to_string());
    let mut answered = String::new();
    for addr in candidates {
        first = status_of(&addr, &token).await;
        if first.is_ok() {
            answered = addr;
            break;
        }
    }
    let you = whoami(&answered, &token).await;
    let first = first.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows = Vec::new();
    for member in &first.members {
        let status = if member.id == first.id {
            Ok(first.clone())
        } else {
            status_of(&member.addr, &token).await
        };
        rows.push((member.clone(), status));
    }
    let voters_up: Vec<(u64, bool)> = rows
        .iter()
        .filter(|(m, _)| m.voter)
        .map(|(m, s)| (m.id, s.is_ok()))
        .collect();
    let leader_last = rows
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .find(|s| s.role == "leader")
        .and_then(|s| s.last_log_index);
    if args.json {
        let nodes: Vec<serde_json::Value> = rows
            .iter()
            .map(|(m, s)| match s {
                Ok(s) => serde_json::json!({
                    "id": s.id, "addr": s.addr, "role": s.role, "term": s.term,
                    "leader": s.leader, "last_log_index": s.last_log_index,
                    "applied_index": s.applied_index, "snapshot_index": s.snapshot_index,
                    "lag": leader_last.map(|l| l.saturating_sub(s.applied_index.unwrap_or(0))),
                    "heads": s.heads, "voter": m.voter, "up": true, "http": s.http,
                    "serving": s.serving, "load_errors": s.load_errors,
                    "python": s.python_version,
                    "fd_limit": s.fd_limit, "fds_open": s.fds_open, "cpu_ms": s.cpu_ms,
                    "release": s.push_version, "format": s.format_version,
                    "min_format": s.min_format_version,
                    "workers": s.workers,
                }),
                Err(e) => serde_json::json!({"id": m.id, "addr": m.addr, "up": false, "error": e, "voter": m.voter}),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes, "you": you }))?
        );
        return Ok(());
    }
    println!(
        "cluster of {} nodes, leader {}, term {}",
        first.members.len(),
        opt(first.leader),
        first.term
    );
    if let Some(you) = &you {
        println!("you are {}", you.describe());
    }
    println!(
        "{:<4} {:<22} {:<10} {:>5} {:>9} {:>9} {:>6}  {:<8} {:<8} {:<6} HEAD",
        "ID",
        "ADDRESS",
        "ROLE",
        "TERM",
        "LAST LOG",
        "APPLIED",
        "LAG",
        "PYTHON",
        "RELEASE",
        "FORMAT"
    );
    let mut load_errors = Vec::new();
    let mut worker_lines = Vec::new();
    for (member, status) in rows {
        match status {
            Ok(s) => {
                let lag = match (leader_last, s.applied_index) {
                    (Some(l), Some(a)) => l.saturating_sub(a).to_string(),
                    (Some(l), None) => l.to_string(),
                    _ => "-".into(),
                };
                let heads = if s.heads.is_empty() {
                    "-".to_string()
                } else {
                    s.heads
                        .iter()
                        .map(|(app, v)| {
                            let serving = s.serving.iter().find(|(a, _)| a == app).map(|(_, n)| *n);
                            match serving {
                                Some(n) if n == *v => format!("{app}@v{v}"),
                                Some(n) => format!("{app}@v{v} (serving v{n})"),
                                None => format!("{app}@v{v} (not loaded)"),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                };
                if s.fd_limit > 0 && s.fds_open.saturating_mul(5) >= s.fd_limit.saturating_mul(4) {
                    load_errors.push(format!(
                        "node {}: {} of its {} file descriptors are open (a connection flood?)",
                        s.id, s.fds_open, s.fd_limit
                    ));
                }
                for (app, v, e) in &s.load_errors {
                    load_errors.push(format!("node {}: {app}@v{v} failed to load: {e}", s.id));
                }
                if !s.workers.is_empty() {
                    worker_lines.push(format!(
                        "node {} python workers: {}",
                        s.id,
                        workers_line(&s.workers)
                    ));
                }
                println!(
                    "{:<4} {:<22} {:<10} {:>5} {:>9} {:>9} {:>6}  {:<8} {:<8} {:<6} {heads}",
                    s.id,
                    s.addr,
                    s.role,
                    s.term,
                    opt(s.last_log_index),
                    opt(s.applied_index),
                    lag,
                    s.python_version,
                    s.push_version,
                    s.format_version
                );
            }
            Err(e) => println!("{:<4} {:<22} {:<10} ({e})", member.id, member.addr, "down"),
        }
    }
    for line in worker_lines.into_iter().chain(load_errors) {
        println!("{line}");
    }
    if let Some(line) = quorum_line(&voters_up) {
        println!("{line}");
    }
    Ok(())
}

/// One node's workers in a line: "w1 pid 4242 24 MiB busy 1 (daemons), w2 restarting (last
/// was killed by signal 11 (SIGSEGV)), restarts 3".
fn workers_line(workers: &[push_protocol::WorkerRow]) -> String {
    let each: Vec<String> = workers
        .iter()
        .map(|w| {
            // An app pool's worker is named with its pool: "shop/3f2a9c01d4e5/w1".
            let pool = w.pool.as_ref().map_or(String::new(), |p| format!("{p}/"));
            let mut text = if w.up {
                format!(
                    "{pool}w{} pid {} {} MiB busy {}",
                    w.slot,
                    w.pid,
                    w.rss_bytes >> 20,
                    w.busy
                )
            } else {
                format!("{pool}w{} restarting", w.slot)
            };
            if w.tasks {
                text.push_str(" (daemons)");
            }
            if let Some(last) = w.last_exit.as_ref().filter(|_| w.restarts > 0) {
                text.push_str(&format!(" [{} restarts; last {last}]", w.restarts));
            }
            text
        })
        .collect();
    each.join(", ")
}

/// Says that quorum is lost (writes and linearizable reads cannot succeed) and how many more
/// voters must answer, given each voter's (id, answered); None while a majority answers.
fn quorum_line(voters: &[(u64, bool)]) -> Option<String> {
    let total = voters.len();
    let up = voters.iter().filter(|(_, up)| *up).count();
    let majority = total / 2 + 1;
    if total == 0 || up >= majority {
        return None;
    }
    let down: Vec<String> = voters
        .iter()
        .filter(|(_, up)| !*up)
        .map(|(id, _)| id.to_string())
        .collect();
    Some(format!(
        "quorum lost: {up} of {total} voters answer, {majority} are needed, so writes and linearizable reads wait; bring back {} more of nodes {} (a voter that is gone for good stays a member until it is removed)",
        majority - up,
        down.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::quorum_line;

    #[test]
    fn quorum_is_lost_below_a_majority_of_voters() {
        assert_eq!(quorum_line(&[(1, true), (2, true), (3, false)]), None);
        let line =
            quorum_line(&[(1, true), (2, true), (3, false), (4, false), (5, false)]).expect("lost");
        assert!(
            line.starts_with("quorum lost: 2 of 5 voters answer, 3 are needed")
                && line.contains("bring back 1 more of nodes 3, 4, 5"),
            "{line}"
        );
    }
}
