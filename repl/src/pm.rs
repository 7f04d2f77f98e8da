//! The post-mortem view and call tracing: `:errors`, `:pm ID` (numbered frames), `:frame N`
//! (locals), `:source`, `:replay`, leaving with `:q`; `:trace MODULE.FUNC` and `:untrace`.
//! While a failure is open, plain input evaluates in the chosen frame ([`crate::output`]).

use std::time::Duration;

use push_protocol::{DebugAction, DebugReply, FailureRow, FailureView, Op, Reply};

use crate::conn::Conn;
use crate::output::{error_text, print_stream};
use crate::views::format_time;

/// The failures table of `push errors` and `:errors`, newest first.
pub fn errors_table(rows: &[FailureRow], missing: &[(u64, String)]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no failures kept (handlers, daemons, schedules and lambdas that raised show here for an hour)\n");
    } else {
        out.push_str(&format!(
            "{:<12} {:<12} {:<16} {:<26} ERROR\n",
            "ID", "TIME", "APP", "ORIGIN"
        ));
    }
    for r in rows {
        let app = match r.version {
            Some(v) => format!("{}@v{v}", r.app),
            None => r.app.clone(),
        };
        let mut error = r.error.clone();
        if error.len() > 80 {
            let mut cut = 80;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push_str("...");
        }
        out.push_str(&format!(
            "{:<12} {:<12} {:<16} {:<26} {error}  ({})\n",
            r.id,
            format_time(r.at_ms),
            app,
            r.origin,
            r.place
        ));
    }
    for (node, why) in missing {
        out.push_str(&format!("(node {node} not asked: {why})\n"));
    }
    out
}

/// A failure opened: origin, request, numbered frames (0 is where it raised).
pub fn failure_text(view: &FailureView) -> String {
    let r = &view.row;
    let mut out = format!(
        "failure {} on node {} worker w{}: {}@{} {} at {}\n{}\n",
        r.id,
        r.node,
        r.worker,
        r.app,
        r.version.map_or("?".into(), |v| format!("v{v}")),
        r.origin,
        format_time(r.at_ms),
        r.error
    );
    if let Some(request) = &view.request {
        out.push_str("request:\n");
        for line in request.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str("frames:\n");
    for f in &view.frames {
        out.push_str(&format!(
            "  {:>2}: {}:{} in {}\n        {}\n",
            f.index, f.file, f.line, f.function, f.code
        ));
    }
    out.push_str(
        ":frame N shows a frame's locals; input evaluates in the frame; :source, :replay; :q leaves\n",
    );
    out
}

fn debug_call(conn: &Conn, action: DebugAction, timeout: Duration) -> Option<DebugReply> {
    let op = Op::Debug {
        action,
        here: false,
        scope: vec![],
    };
    match conn.call_timeout(op, timeout) {
        Ok(Reply::Debug(reply)) => Some(reply),
        Ok(other) => {
            eprintln!("{}", error_text(format!("unexpected reply {other:?}")));
            None
        }
        Err(e) => {
            eprintln!("{}", error_text(&e));
            None
        }
    }
}

const CALL: Duration = Duration::from_secs(30);

/// Runs a post-mortem or tracing command; returns false when `cmd` is not one.
pub fn run(conn: &Conn, cmd: &str, rest: &str) -> bool {
    match cmd {
        "errors" => {
            if let Some(DebugReply::Errors { rows, missing }) =
                debug_call(conn, DebugAction::Errors, CALL)
            {
                print!("{}", errors_table(&rows, &missing));
            }
        }
        "pm" => {
            let id = rest.trim();
            if id.is_empty() {
                eprintln!(
                    "{}",
                    error_text("usage: :pm ID (an id from :errors or `push errors`)")
                );
                return true;
            }
            let action = DebugAction::Open { id: id.to_string() };
            if let Some(DebugReply::Opened(view)) = debug_call(conn, action, CALL) {
                print!("{}", failure_text(&view));
                conn.set_pm(Some((view.row.id.clone(), 0)));
            }
        }
        "frame" | "source" | "replay" => {
            let Some((id, frame)) = conn.pm() else {
                eprintln!(
                    "{}",
                    error_text(format!(
                        ":{cmd} works on an open failure: `:pm ID` first (`:errors` lists them)"
                    ))
                );
                return true;
            };
            match cmd {
                "frame" => frame_command(conn, id, rest),
                "source" => {
                    if let Some(DebugReply::Source { file, line, text }) =
                        debug_call(conn, DebugAction::Source { id, frame }, CALL)
                    {
                        println!("{file}:{line}\n{text}");
                    }
                }
                _ => {
                    let reply =
                        debug_call(conn, DebugAction::Replay { id }, Duration::from_secs(90));
                    if let Some(DebugReply::Replayed {
                        ok,
                        summary,
                        failure,
                    }) = reply
                    {
                        if ok {
                            println!("replay passed: {summary}");
                        } else {
                            let again = failure
                                .map(|f| format!("; kept as failure {f} (:pm {f})"))
                                .unwrap_or_default();
                            eprintln!("{}", error_text(format!("replay failed: {summary}{again}")));
                        }
                    }
                }
            }
        }
        "trace" => trace(conn, rest),
        "untrace" => {
            if let Some(DebugReply::Untraced { stopped }) =
                debug_call(conn, DebugAction::Untrace, CALL)
            {
                println!("stopped {stopped} trace(s)");
            }
        }
        _ => return false,
    }
    true
}

fn frame_command(conn: &Conn, id: String, rest: &str) {
    let Ok(frame) = rest.trim().parse::<u32>() else {
        eprintln!(
            "{}",
            error_text("usage: :frame N (a frame number from :pm; 0 is where it raised)")
        );
        return;
    };
    let action = DebugAction::Locals {
        id: id.clone(),
        frame,
    };
    if let Some(DebugReply::Locals(names)) = debug_call(conn, action, CALL) {
        conn.set_pm(Some((id, frame)));
        println!("frame {frame} locals:");
        if names.is_empty() {
            println!("  (none)");
        }
        for (name, value) in names {
            println!("  {name} = {value}");
        }
    }
}

/// `:trace MODULE.FUNC [--all] [--max N] [--secs S]`.
pub fn parse_trace(rest: &str) -> Result<(String, bool, u32, u32), String> {
    const USAGE: &str = "usage: :trace MODULE.FUNC [--all] [--max N] [--secs S] (defaults: this node, 100 events, 60 s)";
    let mut words = rest.split_whitespace();
    let (mut target, mut all, mut max, mut secs) = (None, false, 100, 60);
    while let Some(word) = words.next() {
        match word {
            "--all" => all = true,
            "--max" | "--secs" => {
                let n = words
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("{word} takes a number; {USAGE}"))?;
                if word == "--max" {
                    max = n;
                } else {
                    secs = n;
                }
            }
            w if w.starts_with("--") => return Err(format!("unknown option {w}; {USAGE}")),
            w if target.is_none() && w.contains('.') => target = Some(w.to_string()),
            _ => return Err(USAGE.to_string()),
        }
    }
    let target = target.ok_or_else(|| USAGE.to_string())?;
    Ok((target, all, max, secs))
}

fn trace(conn: &Conn, rest: &str) {
    let (target, all, max, secs) = match parse_trace(rest) {
        Ok(parsed) => parsed,
        Err(usage) => {
            eprintln!("{}", error_text(usage));
            return;
        }
    };
    let Some(client) = conn.client() else {
        eprintln!("{}", error_text("not connected; :reconnect or :use ID"));
        return;
    };
    println!(
        "tracing {target} on {} for up to {max} calls or {secs} s (:untrace from another REPL stops it)",
        if all { "every node" } else { "this node" }
    );
    let op = Op::Debug {
        action: DebugAction::Trace { target, max, secs },
        here: !all,
        scope: vec![],
    };
    let untrace = Op::Debug {
        action: DebugAction::Untrace,
        here: !all,
        scope: vec![],
    };
    let outcome = print_stream(conn, &client, op, Some((None, untrace)));
    match outcome {
        Ok(Some(Ok(Reply::Debug(DebugReply::Traced { events, why, .. })))) => {
            println!("trace ended: {events} call(s) shown; {why}")
        }
        Ok(Some(Ok(other))) => eprintln!("{}", error_text(format!("unexpected reply {other:?}"))),
        Ok(Some(Err(e))) => eprintln!("{}", error_text(e.to_string())),
        Ok(None) | Err(_) => {
            conn.lost();
            eprintln!(
                "{}",
                error_text("lost the node during the trace; `:reconnect`")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_trace;

    #[test]
    fn trace_arguments() {
        assert_eq!(
            parse_trace("app.square").unwrap(),
            ("app.square".into(), false, 100, 60)
        );
        assert_eq!(
            parse_trace("app.square --all --max 5 --secs 9").unwrap(),
            ("app.square".into(), true, 5, 9)
        );
        assert!(parse_trace("--max x app.f").is_err());
        assert!(parse_trace("").is_err());
        assert!(parse_trace("app.f --bogus").is_err());
    }
}
