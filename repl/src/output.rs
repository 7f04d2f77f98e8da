//! Printing what the node answers: streams as they arrive, values, tracebacks in colour.

use std::io::{IsTerminal, Write};

use nu_ansi_term::Color;
use push_protocol::{DebugAction, DebugReply, EvalResult, Op, Reply, Stream};

use crate::conn::Conn;

fn colour() -> bool {
    std::io::stdout().is_terminal()
}

/// An error line (a message or an error), red on a terminal.
pub fn error_text(text: impl std::fmt::Display) -> String {
    if colour() {
        Color::Red.paint(text.to_string()).to_string()
    } else {
        text.to_string()
    }
}

/// Prints a finished evaluation; returns false when it raised.
pub fn print_result(result: &EvalResult) -> bool {
    if let Some(value) = &result.value {
        println!("{value}");
    }
    if let Some(cut) = &result.truncated {
        let note = format!("[{cut}]");
        println!(
            "{}",
            if colour() {
                Color::Yellow.paint(note).to_string()
            } else {
                note
            }
        );
    }
    match &result.error {
        Some(e) => {
            eprintln!("{}", error_text(&e.formatted));
            false
        }
        None => true,
    }
}

/// Evaluates `code` in the current session, printing output as it streams; Ctrl-C while it
/// runs interrupts it on the node. Returns false when it raised or could not run.
pub fn eval_and_print(conn: &Conn, code: &str) -> bool {
    let Some(client) = conn.client() else {
        eprintln!(
            "{}",
            error_text(format!(
                "not connected to {}; `:reconnect`, or `:use ID` to pick another node",
                conn.addr()
            ))
        );
        return false;
    };
    let session = conn.session();
    let op = match conn.pm() {
        Some((id, frame)) => Op::Debug {
            action: DebugAction::Eval {
                id,
                frame,
                code: code.to_string(),
            },
            here: false,
            scope: vec![],
        },
        None => Op::Eval {
            session,
            code: code.to_string(),
            module: conn.module(),
        },
    };
    let outcome = conn.handle().block_on(async {
        let mut replies = client.call_stream(op).await.map_err(|e| e.to_string())?;
        let mut last = None;
        loop {
            tokio::select! {
                reply = replies.recv() => match reply {
                    Some(Ok(Reply::Output { stream: Stream::Stdout, text })) => {
                        print!("{text}");
                        std::io::stdout().flush().ok();
                    }
                    Some(Ok(Reply::Output { stream: Stream::Stderr, text })) => eprint!("{text}"),
                    Some(other) => last = Some(other),
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => {
                    if let Some(session) = session {
                        eprintln!("{}", error_text("^C — interrupting the evaluation on the node"));
                        let _ = client.call(Op::Interrupt { session }).await;
                    }
                }
            }
        }
        Ok::<_, String>(last)
    });
    let ok = match outcome {
        Ok(Some(Ok(Reply::Evaluated(result))))
        | Ok(Some(Ok(Reply::Debug(DebugReply::Evaluated(result))))) => print_result(&result),
        Ok(Some(Ok(other))) => {
            eprintln!("{}", error_text(format!("unexpected reply {other:?}")));
            false
        }
        Ok(Some(Err(e))) => {
            eprintln!("{}", error_text(e.to_string()));
            false
        }
        Ok(None) | Err(_) => {
            conn.lost();
            let reason = outcome
                .err()
                .unwrap_or_else(|| "the node closed the connection".into());
            eprintln!(
                "{}",
                error_text(format!("lost the node at {} ({reason}); `:reconnect`, or `:use ID` to pick another node", conn.addr()))
            );
            false
        }
    };
    conn.refresh();
    ok
}
