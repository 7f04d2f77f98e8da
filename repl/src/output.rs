//! Printing what the node answers: streams as they arrive, values, tracebacks in colour.

use std::io::{IsTerminal, Write};

use nu_ansi_term::Color;
use push_protocol::{Client, DebugAction, DebugReply, EvalResult, Op, Outcome, Reply, Stream};

use crate::conn::Conn;

fn colour() -> bool {
    std::io::stdout().is_terminal()
}

/// Runs `op` as a stream on `client`, printing its output as it arrives, and returns its last
/// other reply (`None` when the node closed the stream first; `Err` when the request could
/// not be sent). On Ctrl-C, `on_ctrl_c`'s request is sent (after printing its note, if any)
/// and the stream goes on to its end.
pub fn print_stream(
    conn: &Conn,
    client: &Client,
    op: Op,
    on_ctrl_c: Option<(Option<&str>, Op)>,
) -> Result<Option<Outcome>, String> {
    conn.handle().block_on(async {
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
                    if let Some((note, interrupt)) = &on_ctrl_c {
                        if let Some(note) = note {
                            eprintln!("{}", error_text(note));
                        }
                        let _ = client.call(interrupt.clone()).await;
                    }
                }
            }
        }
        Ok(last)
    })
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
    let interrupt = session.map(|session| {
        let note = "^C — interrupting the evaluation on the node";
        (Some(note), Op::Interrupt { session })
    });
    let outcome = print_stream(conn, &client, op, interrupt);
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
