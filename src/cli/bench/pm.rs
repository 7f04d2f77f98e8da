//! `push bench pm`: opening a kept failure and evaluating in one of its frames (round trips
//! from one client), and what tracing adds to each call of a traced function (measured in
//! the worker: the same loop of calls untraced, then traced).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use push_protocol::{DebugAction, DebugReply, Op, Reply, RunFunc, RunOn, Value};

use super::super::target::Target;
use super::{report, summarise};

#[derive(clap::Args, Debug)]
pub struct PmBench {
    /// Round trips of each kind
    #[arg(long, default_value_t = 1000)]
    pub requests: u64,
    /// Stop each kind after this many seconds
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Calls of the traced function in each of the two loops
    #[arg(long, default_value_t = 2000)]
    pub calls: u32,
}

fn debug(action: DebugAction) -> Op {
    Op::Debug {
        action,
        here: false,
        scope: vec![],
    }
}

/// Leaves one failure to look at: a lambda (`json:loads` of bad JSON) that raises on the
/// node; returns its id.
async fn make_failure(client: &push_protocol::Client) -> anyhow::Result<String> {
    let op = Op::Run {
        func: RunFunc::Path("json:loads".into()),
        args: vec![Value::Str("{not json".into())],
        on: RunOn::Here,
    };
    client
        .call(op)
        .await
        .context("running the failing lambda")?;
    let rows = match client.call(debug(DebugAction::Errors)).await? {
        Reply::Debug(DebugReply::Errors { rows, .. }) => rows,
        other => bail!("unexpected reply {other:?}"),
    };
    rows.into_iter()
        .find(|r| r.origin == "lambda json:loads")
        .map(|r| r.id)
        .ok_or_else(|| anyhow::anyhow!("the failing lambda left no kept failure"))
}

/// Microseconds per call of `json.dumps(1)` over `calls` calls, measured in the worker.
async fn per_call(client: &push_protocol::Client, calls: u32) -> anyhow::Result<f64> {
    let code = format!(
        "import json, time\n_t = time.perf_counter()\nfor _ in range({calls}): json.dumps(1)\n(time.perf_counter() - _t) / {calls} * 1e6"
    );
    let op = Op::Eval {
        session: None,
        code,
        module: None,
    };
    match client.call(op).await? {
        Reply::Evaluated(r) => match (&r.value, &r.error) {
            (Some(v), None) => Ok(v.parse()?),
            _ => bail!("timing loop failed: {:?}", r.error),
        },
        other => bail!("unexpected reply {other:?}"),
    }
}

/// Whether `json.dumps` is traced in a worker of the node.
async fn traced(client: &push_protocol::Client) -> anyhow::Result<bool> {
    let op = Op::Eval {
        session: None,
        code: "import json\nhasattr(json.dumps, '__push_traced__')".into(),
        module: None,
    };
    Ok(matches!(client.call(op).await?, Reply::Evaluated(r) if r.value.as_deref() == Some("True")))
}

pub(super) async fn pm(target: &Target, args: &PmBench, json: bool) -> anyhow::Result<()> {
    let client = target.connect(None).await?;
    let id = make_failure(&client).await?;
    let kinds = [
        (
            "open a failure",
            debug(DebugAction::Open { id: id.clone() }),
        ),
        (
            "eval in its frame",
            debug(DebugAction::Eval {
                id: id.clone(),
                frame: 0,
                code: "len(s)".into(),
            }),
        ),
    ];
    eprintln!(
        "bench pm: up to {} round trips (or {} s) of each kind on failure {id}…",
        args.requests, args.duration
    );
    let mut out = Vec::new();
    for (name, op) in kinds {
        for _ in 0..10 {
            client.call(op.clone()).await?;
        }
        let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
        let started = Instant::now();
        let (mut lat, mut errors) = (Vec::new(), 0);
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

    // Tracing: the same loop untraced, then with json.dumps traced (on every worker here).
    let untraced = per_call(&client, args.calls).await?;
    let tracer = target.connect(None).await?;
    let trace = Op::Debug {
        action: DebugAction::Trace {
            target: "json.dumps".into(),
            max: 10_000,
            secs: 120,
        },
        here: true,
        scope: vec![],
    };
    let mut events = tracer.call_stream(trace).await?;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !traced(&client).await? {
        if Instant::now() > deadline {
            bail!("the trace of json.dumps did not start within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let with_trace = per_call(&client, args.calls).await?;
    client.call(debug(DebugAction::Untrace)).await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    let params = serde_json::json!({
        "requests": args.requests, "duration": args.duration, "calls": args.calls,
        "untraced_us_per_call": untraced, "traced_us_per_call": with_trace,
        "trace_overhead_us_per_call": with_trace - untraced,
    });
    report(json, "pm", params, &out)?;
    if !json {
        println!(
            "pm trace overhead               {:.2} µs per traced call ({:.2} µs untraced, {:.2} µs traced, {} calls)",
            with_trace - untraced,
            untraced,
            with_trace,
            args.calls
        );
    }
    Ok(())
}
