//! `push bench eval`: eval and completion round trips in one session.

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
    let params = serde_json::json!({ "requests": args.requests, "duration": args.duration });
    report(json, "eval", params, &out)
}
