//! The `:meta` commands: cluster navigation, code store, data and inspection.

use std::time::Duration;

use push_protocol::{realm, Client, Op, ReadMode, Reply};

use crate::conn::Conn;
use crate::output::{error_text, print_result};
use crate::Hooks;

/// What the loop does next.
pub enum Flow {
    Continue,
    Quit,
}

/// The app a session works on unless `:app` says otherwise.
const DEFAULT_APP: &str = "main";

/// The app this REPL works on: `:versions`, `:rollback`, `:diff` and the prompt's `@vN`.
static APP: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The app the session works on (`main` unless `:app` chose another).
pub fn current_app() -> String {
    APP.lock()
        .ok()
        .and_then(|a| a.clone())
        .unwrap_or_else(|| DEFAULT_APP.to_string())
}

/// A worker `:use` names: its app pool (None: the main pool) and number there.
type UseWorker = Option<(Option<String>, u32)>;

/// `ID`, `ID/W` or `ID/POOL/W` (POOL an app's name or its pool as `:workers` shows it,
/// `APP/ENV`) of `:use`.
fn parse_use(arg: &str) -> Option<(u64, UseWorker)> {
    match arg.split_once('/') {
        Some((id, rest)) => {
            let (pool, w) = match rest.rsplit_once('/') {
                Some((pool, w)) if !pool.trim().is_empty() => (Some(pool.trim().to_string()), w),
                Some(_) => return None,
                None => (None, rest),
            };
            Some((
                id.trim().parse().ok()?,
                Some((pool, w.trim().trim_start_matches('w').parse().ok()?)),
            ))
        }
        None => Some((arg.trim().parse().ok()?, None)),
    }
}

/// One line per command, for `:help` and for unknown commands.
pub const HELP: &[(&str, &str)] = &[
    (":help", "this list"),
    (
        ":nodes",
        "every node: id, address, role, term, applied index, HEAD",
    ),
    (
        ":use ID[/[POOL/]W]",
        "switch to node ID (its python worker W, of app pool POOL); the REPL keeps the member list",
    ),
    (
        ":workers",
        "this node's python workers: pid, memory, CPU, busy, sessions, restarts",
    ),
    (
        ":on all EXPR",
        "evaluate EXPR on every node; results by node",
    ),
    (
        ":app [NAME]",
        "work on app NAME (default main): versions, deploy, rollback, diff, kv, queues, peek, ts",
    ),
    (":versions", "the app's versions; * marks HEAD"),
    (":deploy DIR", "deploy DIR as a new version of the app"),
    (":rollback [V]", "HEAD back to its parent, or to version V"),
    (":diff A B", "unified diff between versions A and B"),
    (":kv NAME", "the keys and values of replicated map NAME"),
    (":queues", "every queue: ready, leased, puts, acks"),
    (":peek Q [N]", "the first N (10) ready items of queue Q"),
    (
        ":daemons",
        "daemons, partition handlers, schedules: node, state, restarts",
    ),
    (":restart D", "restart daemon D wherever it runs"),
    (":tail D", "daemon D's log lines, following until Ctrl-C"),
    (
        ":ts [NAME]",
        "every timeseries, or the last 20 points of NAME",
    ),
    (":registry", "registered nodes: capabilities, tags, alive"),
    (
        ":audit [N|KIND]",
        "the newest N (20) audit entries, or only deploys, evals, …",
    ),
    (
        ":inspect EXPR",
        "signature, docstring, source location and repr",
    ),
    (
        ":in MODULE",
        "evaluate inside a loaded module (hot-patch); `:in` alone leaves it",
    ),
    (
        ":reconnect",
        "reconnect to the current node (a new session)",
    ),
    (
        ":errors",
        "failures kept on the cluster's workers, newest first",
    ),
    (
        ":pm ID",
        "open a failure: frames; then :frame N, :source, :replay, input evals in the frame, :q leaves",
    ),
    (
        ":trace M.F",
        "print calls of M.F as they happen [--all] [--max N] [--secs S]; :untrace",
    ),
    (":quit", "leave (Ctrl-D works too)"),
];

fn help_text() -> String {
    HELP.iter()
        .map(|(c, h)| format!("  {c:<15} {h}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The greeting line.
pub fn banner(conn: &Conn) -> String {
    let you = conn
        .me()
        .map(|me| format!(" You are {}.", me.describe()))
        .unwrap_or_default();
    match conn.status() {
        Some(s) => format!(
            "Push REPL — node {} ({}) at {}, {} nodes in the cluster, Python {}.{you} :help for commands, Ctrl-D to leave.",
            s.id,
            s.role,
            s.addr,
            s.members.len(),
            s.python_version
        ),
        None => format!("Push REPL — not connected to {}. :help for commands.", conn.addr()),
    }
}

fn call(conn: &Conn, op: Op) -> Option<Reply> {
    match conn.call_timeout(op, Duration::from_secs(30)) {
        Ok(reply) => Some(reply),
        Err(e) => {
            eprintln!("{}", error_text(&e));
            None
        }
    }
}

/// Runs one meta command (without its leading `:`).
pub fn run(conn: &Conn, hooks: &Hooks, line: &str) -> Flow {
    let line = line.trim();
    let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    if let ("quit" | "q" | "exit", Some((id, _))) = (cmd, conn.pm()) {
        conn.set_pm(None);
        println!("left failure {id}");
        return Flow::Continue;
    }
    if crate::pm::run(conn, cmd, rest) {
        return Flow::Continue;
    }
    match cmd {
        "help" | "h" | "?" => println!("{}", help_text()),
        "quit" | "q" | "exit" => return Flow::Quit,
        "nodes" => nodes(conn),
        "use" => match parse_use(rest) {
            Some((id, worker)) => match conn.members().into_iter().find(|m| m.id == id) {
                Some(m) => match conn.use_addr(m.addr.clone(), worker.clone()) {
                    Ok(()) => match worker {
                        Some((None, w)) => println!("now on node {id} at {}, python worker w{w}", m.addr),
                        Some((Some(pool), w)) => println!("now on node {id} at {}, python worker w{w} of pool {pool}", m.addr),
                        None => println!("now on node {id} at {}", m.addr),
                    },
                    Err(e) => eprintln!("{}", error_text(format!("node {id} at {}: {e}", m.addr))),
                },
                None => eprintln!(
                    "{}",
                    error_text(format!("no node {id}; `:nodes` lists them"))
                ),
            },
            None => eprintln!(
                "{}",
                error_text("usage: :use ID, :use ID/W or :use ID/POOL/W (a node id from `:nodes`, a worker and its pool from `:workers`)")
            ),
        },
        "workers" => {
            conn.refresh();
            match conn.status() {
                Some(s) => println!("{}", crate::views::workers_table(&s, conn.session())),
                None => eprintln!("{}", error_text("not connected; :reconnect or :use ID")),
            }
        }
        "reconnect" => match conn.connect() {
            Ok(()) => println!("reconnected to {} (new session)", conn.addr()),
            Err(e) => eprintln!("{}", error_text(&e)),
        },
        "on" => {
            let Some(expr) = rest
                .strip_prefix("all")
                .map(str::trim)
                .filter(|e| !e.is_empty())
            else {
                eprintln!("{}", error_text("usage: :on all EXPR"));
                return Flow::Continue;
            };
            if let Some(Reply::EvaluatedAll(results)) = call(
                conn,
                Op::EvalAll {
                    code: expr.to_string(),
                },
            ) {
                for (id, result) in results {
                    print!("node {id:<3} ");
                    match result {
                        Ok(r) if r.value.is_none() && r.error.is_none() => println!("(no value)"),
                        Ok(r) => {
                            if r.error.is_some() {
                                println!();
                            }
                            print_result(&r);
                        }
                        Err(e) => println!("{}", error_text(format!("unreachable: {e}"))),
                    }
                }
            }
        }
        "versions" => {
            if let Some(Reply::Versions { head, versions }) =
                call(conn, Op::Versions { app: current_app() })
            {
                if versions.is_empty() {
                    println!("no versions yet; `:deploy DIR`");
                }
                for v in versions.iter().rev() {
                    let mark = if Some(v.number) == head { "*" } else { " " };
                    println!(
                        "{mark} v{:<4} {:<12} {:>3} files  {}",
                        v.number, v.author, v.files, v.message
                    );
                }
            }
        }
        "app" => {
            let name = rest.trim();
            if let Err(e) = realm::check_app(name).or_else(|e| match name {
                "" => Ok(()),
                _ => Err(e),
            }) {
                eprintln!("{}", error_text(e.to_string()));
                return Flow::Continue;
            }
            let chosen = (!name.is_empty()).then(|| name.to_string());
            if let Ok(mut app) = APP.lock() {
                *app = chosen;
            }
            conn.refresh();
            println!("working on app {}", current_app());
        }
        "deploy" if !rest.is_empty() => {
            match (hooks.deploy)(&conn.addr(), conn.token(), &current_app(), rest) {
                Ok(line) => {
                    println!("{line}");
                    conn.refresh();
                }
                Err(e) => eprintln!("{}", error_text(&e)),
            }
        }
        "rollback" => {
            let version = match rest.trim_start_matches('v') {
                "" => None,
                v => match v.parse() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        eprintln!("{}", error_text("usage: :rollback [VERSION]"));
                        return Flow::Continue;
                    }
                },
            };
            if let Some(Reply::Activated { from, to }) = call(
                conn,
                Op::Activate {
                    app: current_app(),
                    version,
                },
            ) {
                println!(
                    "HEAD moved from {} to v{to}",
                    from.map_or("none".into(), |f| format!("v{f}"))
                );
                conn.refresh();
            }
        }
        "diff" => {
            let parts: Vec<Option<u64>> = rest
                .split_whitespace()
                .map(|p| p.trim_start_matches('v').parse().ok())
                .collect();
            match parts.as_slice() {
                [Some(from), Some(to)] => {
                    if let Some(Reply::Diff(text)) = call(
                        conn,
                        Op::Diff {
                            app: current_app(),
                            from: *from,
                            to: *to,
                        },
                    ) {
                        print!(
                            "{}",
                            if text.is_empty() {
                                "identical\n".to_string()
                            } else {
                                text
                            }
                        );
                    }
                }
                _ => eprintln!("{}", error_text("usage: :diff A B (version numbers)")),
            }
        }
        "kv" if !rest.is_empty() => {
            let map = match realm::qualify(&current_app(), rest) {
                Ok(map) => map,
                Err(e) => {
                    eprintln!("{}", error_text(e.to_string()));
                    return Flow::Continue;
                }
            };
            if let Some(Reply::Keys(keys)) = call(
                conn,
                Op::KvList {
                    map: map.clone(),
                    prefix: String::new(),
                    read: ReadMode::Linearizable,
                },
            ) {
                if keys.is_empty() {
                    println!("{rest} is empty");
                }
                for key in keys.iter().take(100) {
                    if let Some(Reply::Value(Some(v))) = call(
                        conn,
                        Op::KvGet {
                            map: map.clone(),
                            key: key.clone(),
                            read: ReadMode::Stale,
                        },
                    ) {
                        println!("  {key:<24} {v}");
                    }
                }
                if keys.len() > 100 {
                    println!("  … {} more keys", keys.len() - 100);
                }
            }
        }
        "queues" => {
            if let Some(Reply::QueueStats(mut stats)) = call(conn, Op::QueueStats) {
                realm::keep_local(&current_app(), &mut stats, |s| &mut s.name);
                print!("{}", crate::views::queue_table(&stats));
            }
        }
        "peek" if !rest.is_empty() => {
            let mut parts = rest.split_whitespace();
            let queue = parts.next().unwrap_or_default().to_string();
            let n = parts.next().and_then(|n| n.parse().ok()).unwrap_or(10);
            if let Some(Reply::Peeked(items)) = call(
                conn,
                Op::QueuePeek {
                    queue: realm::qualify(&current_app(), &queue).unwrap_or_default(),
                    n,
                },
            ) {
                if items.is_empty() {
                    println!("{queue} has no ready items");
                }
                for item in items {
                    println!("  #{:<8} {}", item.id, item.value);
                }
            }
        }
        "daemons" => {
            if let Some(Reply::Daemons(rows)) = call(conn, Op::Daemons) {
                print!("{}", crate::views::daemon_table(&rows));
            }
        }
        "audit" => {
            let (limit, action) = match rest.parse::<usize>() {
                Ok(n) => (n, None),
                Err(_) if rest.is_empty() => (20, None),
                Err(_) => (20, Some(rest.to_string())),
            };
            let op = Op::Audit {
                after: 0,
                limit,
                action,
            };
            if let Some(Reply::Audit(entries)) = call(conn, op) {
                if entries.is_empty() {
                    println!("no audit entries yet");
                }
                print!("{}", crate::views::audit_text(&entries));
            }
        }
        "registry" => {
            if let Some(Reply::Nodes(entries)) = call(conn, Op::Nodes) {
                print!("{}", crate::views::registry_table(&entries));
            }
        }
        "restart" if !rest.is_empty() => {
            if let Some(Reply::Restarted { units }) = call(
                conn,
                Op::Restart {
                    app: rest.split_once('/').map(|(a, _)| a.to_string()),
                    name: rest.split_once('/').map_or(rest, |(_, n)| n).into(),
                },
            ) {
                println!("restarting {}", units.join(", "));
            }
        }
        "tail" if !rest.is_empty() => {
            let Some(client) = conn.client() else {
                eprintln!("{}", error_text("not connected; `:reconnect`"));
                return Flow::Continue;
            };
            // Follow live at a terminal; a script just gets the lines so far.
            let follow = std::io::IsTerminal::is_terminal(&std::io::stdin());
            if follow {
                println!("following {rest} — Ctrl-C stops");
            }
            let (app, name) = match rest.split_once('/') {
                Some((app, name)) => (Some(app.to_string()), name),
                None => (None, rest),
            };
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let result = conn
                .handle()
                .block_on(crate::views::tail(&client, app, name, follow, stop));
            if let Err(e) = result {
                eprintln!("{}", error_text(&e));
            }
        }
        "ts" if rest.is_empty() => {
            if let Some(Reply::TsStats(mut stats)) = call(conn, Op::TsStats) {
                realm::keep_local(&current_app(), &mut stats, |s| &mut s.name);
                print!("{}", crate::views::ts_table(&stats));
            }
        }
        "ts" => {
            if let Some(Reply::Points(points)) = call(
                conn,
                Op::TsRange {
                    series: realm::qualify(&current_app(), rest).unwrap_or_default(),
                    t0: None,
                    t1: None,
                    last: Some(20),
                    read: ReadMode::Linearizable,
                },
            ) {
                if points.is_empty() {
                    println!("{rest} has no points");
                }
                print!("{}", crate::views::points_text(&points));
            }
        }
        "inspect" if !rest.is_empty() => {
            if let Some(Reply::Inspected(i)) = call(
                conn,
                Op::Inspect {
                    session: conn.session(),
                    expr: rest.into(),
                },
            ) {
                println!(
                    "{rest}{}  ({})",
                    i.signature.unwrap_or_default(),
                    i.type_name
                );
                if let (Some(file), Some(line)) = (&i.file, i.line) {
                    println!("  defined at {file}:{line}");
                }
                if let Some(doc) = i.doc {
                    println!(
                        "{}",
                        doc.lines()
                            .map(|l| format!("  {l}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
                println!("  = {}", i.repr);
            }
        }
        "in" => {
            let module = (!rest.is_empty()).then(|| rest.to_string());
            match &module {
                Some(m) => println!("evaluating inside module {m} — definitions replace the running ones; `:in` to leave"),
                None => println!("back to the session namespace"),
            }
            conn.set_module(module);
        }
        _ => eprintln!(
            "{}",
            error_text(format!(
                "unknown command :{cmd} (or missing argument); the commands are:\n{}",
                help_text()
            ))
        ),
    }
    Flow::Continue
}

fn nodes(conn: &Conn) {
    let members = conn.members();
    if members.is_empty() {
        eprintln!("{}", error_text("no members known; `:reconnect` first"));
        return;
    }
    println!(
        "{:<4} {:<22} {:<10} {:>5} {:>8}  HEAD",
        "ID", "ADDRESS", "ROLE", "TERM", "APPLIED"
    );
    let current = conn.status().map(|s| s.id);
    for m in members {
        let token = conn.token().to_string();
        let status = conn.handle().block_on(async {
            let ask = async {
                let client = Client::connect(&m.addr, &token).await.ok()?;
                match client.call(Op::Status).await.ok()? {
                    Reply::Status(s) => Some(*s),
                    _ => None,
                }
            };
            tokio::time::timeout(Duration::from_secs(2), ask)
                .await
                .ok()
                .flatten()
        });
        let mark = if Some(m.id) == current { "*" } else { " " };
        match status {
            Some(s) => println!(
                "{mark}{:<3} {:<22} {:<10} {:>5} {:>8}  {}",
                s.id,
                s.addr,
                s.role,
                s.term,
                s.applied_index.map_or("-".into(), |a| a.to_string()),
                s.heads
                    .iter()
                    .map(|(a, v)| format!("{a}@v{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => println!("{mark}{:<3} {:<22} {:<10}", m.id, m.addr, "down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_use;

    #[test]
    fn use_takes_a_node_and_optionally_its_worker() {
        assert_eq!(parse_use("2"), Some((2, None)));
        assert_eq!(parse_use("1/2"), Some((1, Some((None, 2)))));
        assert_eq!(parse_use("1/w2"), Some((1, Some((None, 2)))));
        assert_eq!(
            parse_use("1/shop/w1"),
            Some((1, Some((Some("shop".into()), 1))))
        );
        assert_eq!(
            parse_use("1/shop/0123456789ab/2"),
            Some((1, Some((Some("shop/0123456789ab".into()), 2))))
        );
        assert_eq!(parse_use("x"), None);
        assert_eq!(parse_use("1/"), None);
        assert_eq!(parse_use("1//2"), None);
    }
}
