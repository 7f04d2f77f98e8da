//! `push bench eval`: eval and completion round trips in one session, and interrupts: how long
//! a running `while True: pass` takes to answer once Ctrl-C (`Op::Interrupt`) reached it.

use std::time::{Duration, Instant};

use anyhow::bail;
use push_protocol::{Op, Reply};

use super::super::target::Target;
use super::{report, summarise};

#[derive(clap::Args, Debug)]
pub struct EvalBench {
    /// Round trips of each kind
    #[arg(long, default_value_t = 2000)]
    pub requests: u64,
    /// Stop each kind after this many seconds
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Interrupts of a running loop to time
    #[arg(long, default_value_t = 100)]
    pub interrupts: u64,
}

pub(super) async fn eval(target: &Target, args: &EvalBench, json: bool) -> anyhow::Result<()> {
    let client = target.connect(None).await?;
    let session = match client.call(Op::SessionOpen).await? {
        Reply::Session { id } => id,
        other => bail!("unexpected reply {other:?}"),
    };
    let code = "push.kv(\"bench\").";
    let kinds: [(&str, Op); 2] = [
        (
            "eval 1+1",
            Op::Eval {
                session: Some(session),
                code: "1+1".into(),
                module: None,
            },
        ),
        (
            "complete push.kv(\"bench\").",
            Op::Complete {
                session: Some(session),
                code: code.into(),
                cursor: code.len(),
                module: None,
            },
        ),
    ];
    let mut out = Vec::new();
    eprintln!(
        "bench eval: up to {} round trips (or {} s) of each kind…",
        args.requests, args.duration
    );
    for (name, op) in kinds {
        // Warm up (first completion imports jedi).
        for _ in 0..20 {
            client.call(op.clone()).await?;
        }
        let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
        let started = Instant::now();
        let mut lat = Vec::new();
        let mut errors = 0;
        for _ in 0..args.requests {
            if Instant::now() > deadline {
                break;
            }
            let t = Instant::now();
            match client.call(op.clone()).await {
                Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                Err(_) => errors += 1,
            }
        }
        out.push((
            name.to_string(),
            summarise(lat, errors, started.elapsed().as_secs_f64()),
        ));
    }
    out.push((
        "interrupt a running loop".to_string(),
        interrupts(&client, session, args).await?,
    ));
    let params = serde_json::json!({
        "requests": args.requests,
        "duration": args.duration,
        "interrupts": args.interrupts,
    });
    report(json, "eval", params, &out)
}

/// Starts `while True: pass` in `session`, interrupts it once it runs, and times each from the
/// interrupt that reached it to the eval's answer (a KeyboardInterrupt; anything else counts
/// as an error).
async fn interrupts(
    client: &push_protocol::Client,
    session: u64,
    args: &EvalBench,
) -> anyhow::Result<super::Summary> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for _ in 0..args.interrupts {
        if Instant::now() > deadline {
            break;
        }
        let mut answer = client
            .call_stream(Op::Eval {
                session: Some(session),
                code: "while True: pass".into(),
                module: None,
            })
            .await?;
        // Ctrl-C as a user presses it: again until it reaches a running eval.
        let reached = loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let t = Instant::now();
            match client.call(Op::Interrupt { session }).await? {
                Reply::Interrupted { running: true } => break t,
                Reply::Interrupted { running: false } => {}
                other => bail!("unexpected reply {other:?}"),
            }
            if Instant::now() > deadline + Duration::from_secs(10) {
                bail!("the loop never ran: no interrupt reached it within 10 s");
            }
        };
        let mut interrupted = false;
        while let Some(reply) = answer.recv().await {
            if let Ok(Reply::Evaluated(r)) = reply {
                interrupted = r.error.is_some_and(|e| e.type_name == "KeyboardInterrupt");
            }
        }
        match interrupted {
            true => lat.push(reached.elapsed().as_micros() as u64),
            false => errors += 1,
        }
    }
    Ok(summarise(lat, errors, started.elapsed().as_secs_f64()))
}
