//! `push bench`: bounded load generators printing throughput and latency percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use push_protocol::{Client, Op, ReadMode, Reply, Value};

use super::status::status_of;
use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
    /// Print one JSON object (bench, params, results by phase) instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// Prints a bench's results: a line per phase, or one JSON object.
fn report(
    json: bool,
    bench: &str,
    params: serde_json::Value,
    results: &[(String, Summary)],
) -> anyhow::Result<()> {
    if json {
        let results: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(name, s)| Ok((name.clone(), serde_json::to_value(s)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let out = serde_json::json!({ "bench": bench, "params": params, "results": results });
        println!("{out}");
        return Ok(());
    }
    for (name, s) in results {
        println!(
            "{bench} {name:<28} {:>9.0}/s  ({} ok, {} errors in {:.2} s)  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            s.per_second, s.ok, s.errors, s.seconds, s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable kv writes (or linearizable reads with --read) from N concurrent clients
    Kv(KvBench),
    /// Eval round trips of `1+1` and of a completion request, one client in a session
    Eval(EvalBench),
    /// Time from `deploy` of a 50-module app until every node serves the new version
    Deploy(DeployBench),
    /// Kill the leader (local clusters only: SIGKILL by pid) and time the next acknowledged write
    Failover(FailoverBench),
    /// Queue puts from N producers, then take+ack from N consumers until the queue is empty
    Queue(QueueBench),
}

#[derive(clap::Args, Debug)]
pub struct QueueBench {
    /// Concurrent producers (and consumers)
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Seconds of puts
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Value size in bytes
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
}

async fn queue(target: &Target, args: &QueueBench, json: bool) -> anyhow::Result<()> {
    let addr = leader_addr(target).await?;
    let token = target.token()?;
    let name = format!("bench-{}", crate::clock::now_ms());
    let value = Value::Bytes(vec![b'q'; args.value_size]);
    eprintln!(
        "bench queue: {} producers put for {} s into {name}, then {} consumers take+ack until it is empty…",
        args.clients, args.duration, args.clients
    );
    let run = |phase: &'static str| {
        let mut tasks = Vec::new();
        for _ in 0..args.clients.max(1) {
            let (addr, token, name, value) =
                (addr.clone(), token.clone(), name.clone(), value.clone());
            let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
            tasks.push(tokio::spawn(async move {
                let client = Client::connect(&addr, &token).await?;
                let mut lat = Vec::new();
                let mut errors = 0u64;
                loop {
                    let t = Instant::now();
                    if phase == "put" {
                        if t > deadline || lat.len() >= 200_000 {
                            break;
                        }
                        match client
                            .call(Op::QueuePut {
                                queue: name.clone(),
                                values: vec![value.clone()],
                            })
                            .await
                        {
                            Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                            Err(_) => errors += 1,
                        }
                    } else {
                        let take = Op::QueueTake {
                            queue: name.clone(),
                            lease_ms: 60_000,
                            wait_ms: 0,
                        };
                        match client.call(take).await {
                            Ok(Reply::Taken(Some(item))) => {
                                match client
                                    .call(Op::QueueAck {
                                        queue: name.clone(),
                                        id: item.id,
                                    })
                                    .await
                                {
                                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                                    Err(_) => errors += 1,
                                }
                            }
                            Ok(_) => break,
                            Err(_) => errors += 1,
                        }
                        if t.elapsed() > Duration::from_secs(60) {
                            break;
                        }
                    }
                }
                Ok::<_, push_protocol::ClientError>((lat, errors))
            }));
        }
        tasks
    };
    let mut results = Vec::new();
    for phase in ["put", "take+ack"] {
        let started = Instant::now();
        let mut all = Vec::new();
        let mut errors = 0;
        for task in run(phase) {
            let (lat, e) = task.await??;
            all.extend(lat);
            errors += e;
        }
        results.push((
            phase.to_string(),
            summarise(all, errors, started.elapsed().as_secs_f64()),
        ));
    }
    let params = serde_json::json!({
        "clients": args.clients, "duration": args.duration, "value_size": args.value_size,
    });
    report(json, "queue", params, &results)
}

#[derive(clap::Args, Debug)]
pub struct DeployBench {
    /// Deploys to time
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// Modules in the generated app
    #[arg(long, default_value_t = 50)]
    pub modules: u32,
}

#[derive(clap::Args, Debug)]
pub struct FailoverBench {
    /// Really kill the leader process (required: this is destructive)
    #[arg(long)]
    pub yes: bool,
}

async fn statuses(target: &Target) -> anyhow::Result<Vec<push_protocol::NodeStatus>> {
    let token = target.token()?;
    let first = match target.connect(None).await?.call(Op::Status).await? {
        Reply::Status(s) => *s,
        other => bail!("unexpected reply {other:?}"),
    };
    let mut out = Vec::new();
    for m in &first.members {
        if let Ok(s) = status_of(&m.addr, &token).await {
            out.push(s);
        }
    }
    Ok(out)
}

async fn deploy(target: &Target, args: &DeployBench, json: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("push-bench-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let addr = leader_addr(target).await?;
    let token = target.token()?;
    let nodes = statuses(target).await?;
    let mut lat = Vec::new();
    let started = Instant::now();
    eprintln!(
        "bench deploy: {} rounds of a {}-module app, timed until all {} nodes serve it…",
        args.rounds,
        args.modules,
        nodes.len()
    );
    let stamp = crate::clock::now_ms();
    for round in 0..args.rounds {
        let imports: String = (0..args.modules)
            .map(|i| format!("import mod{i:02}\n"))
            .collect();
        std::fs::write(
            dir.join("app.py"),
            format!("{imports}ROUND = {round}  # {stamp}\n"),
        )?;
        for i in 0..args.modules {
            std::fs::write(
                dir.join(format!("mod{i:02}.py")),
                format!("def f{i}(x):\n    return x + {i} + {round}\n"),
            )?;
        }
        let round_started = Instant::now();
        let deploy_args = super::code::DeployArgs {
            dir: dir.clone(),
            message: format!("bench round {round}"),
            no_activate: false,
            app: "bench".into(),
            target: Target {
                addr: Some(addr.clone()),
                token: Some(token.clone()),
                token_file: None,
            },
        };
        let line = super::code::deploy_dir(&deploy_args).await?;
        let version: u64 = line
            .split("bench@v")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("unexpected deploy answer: {line}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        'wait: loop {
            let mut all = true;
            for n in &nodes {
                let serving = status_of(&n.addr, &token).await.ok().and_then(|s| {
                    s.serving
                        .iter()
                        .find(|(a, _)| a == "bench")
                        .map(|(_, v)| *v)
                });
                if serving != Some(version) {
                    all = false;
                    break;
                }
            }
            if all {
                break 'wait;
            }
            if Instant::now() > deadline {
                bail!("v{version} was not served by every node within 30 s; see `push status`");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lat.push(round_started.elapsed().as_micros() as u64);
        eprint!("\r  round {}/{}", round + 1, args.rounds);
    }
    eprintln!();
    let _ = std::fs::remove_dir_all(&dir);
    let s = summarise(lat, 0, started.elapsed().as_secs_f64());
    let params = serde_json::json!({
        "rounds": args.rounds, "modules": args.modules, "nodes": nodes.len(),
    });
    let name = format!(
        "{} modules served by all {} nodes",
        args.modules,
        nodes.len()
    );
    report(json, "deploy", params, &[(name, s)])
}

/// Every member's status once all of them answer and name the same leader in the same term
/// (right after a restart, one node may still call itself leader of an older term; killing it
/// would time nothing). Waits at most 10 s.
async fn settled_statuses(target: &Target) -> anyhow::Result<Vec<push_protocol::NodeStatus>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let nodes = statuses(target).await?;
        let members = nodes.first().map_or(0, |s| s.members.len());
        let leaders: Vec<_> = nodes.iter().filter(|s| s.role == "leader").collect();
        if let [leader] = leaders[..] {
            if nodes.len() == members
                && nodes
                    .iter()
                    .all(|s| s.leader == Some(leader.id) && s.term == leader.term)
            {
                return Ok(nodes);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the members do not agree on one leader within 10 s; check `push status` and retry"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn failover(target: &Target, args: &FailoverBench, json: bool) -> anyhow::Result<()> {
    if !args.yes {
        bail!("`push bench failover` kills the leader's process; run it on a local test cluster with --yes");
    }
    let token = target.token()?;
    let nodes = settled_statuses(target).await?;
    let leader = nodes
        .iter()
        .find(|s| s.role == "leader")
        .ok_or_else(|| anyhow::anyhow!("no leader right now; retry"))?;
    // Killing the leader must leave a majority of the voters, or nothing is ever written.
    let voters: Vec<(u64, bool)> = leader
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| {
            (
                m.id,
                m.id != leader.id && nodes.iter().any(|n| n.id == m.id),
            )
        })
        .collect();
    if let Some(lost) = crate::node::quorum::quorum_lost_message(&voters) {
        bail!(
            "killing leader node {} would leave no majority, so no new leader could be elected: {lost}",
            leader.id
        );
    }
    let survivor = nodes
        .iter()
        .find(|s| s.id != leader.id)
        .ok_or_else(|| anyhow::anyhow!("failover needs at least two nodes"))?;
    let client = Client::connect(&survivor.addr, &token).await?;
    client
        .call(Op::KvSet {
            map: "bench".into(),
            key: "failover".into(),
            value: Value::Int(0),
        })
        .await?;
    eprintln!(
        "killing leader node {} (pid {}), writing through node {}…",
        leader.id, leader.pid, survivor.id
    );
    let killed = Instant::now();
    // SAFETY: kill(2) on a pid the cluster reported for its leader; the user asked with --yes.
    if unsafe { libc::kill(leader.pid as i32, libc::SIGKILL) } != 0 {
        bail!(
            "could not kill pid {}: {}",
            leader.pid,
            std::io::Error::last_os_error()
        );
    }
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let op = Op::KvSet {
            map: "bench".into(),
            key: "failover".into(),
            value: Value::Int(attempts as i64),
        };
        match tokio::time::timeout(Duration::from_secs(2), client.call(op)).await {
            Ok(Ok(Reply::Written { .. })) => break,
            Ok(Err(push_protocol::ClientError::Server(e))) if e.message.contains("quorum lost") => {
                bail!("no write can be acknowledged after the kill: {}", e.message)
            }
            _ if killed.elapsed() > Duration::from_secs(30) => {
                bail!("no write was acknowledged within 30 s of the kill")
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let gap = killed.elapsed();
    let s = summarise(vec![gap.as_micros() as u64], 0, gap.as_secs_f64());
    let params = serde_json::json!({
        "killed": leader.id, "written_through": survivor.id, "attempts": attempts,
    });
    report(
        json,
        "failover",
        params,
        &[("kill -9 leader to next ack".into(), s)],
    )?;
    eprintln!(
        "killed leader {}; restart it to heal the cluster (`push up` restarts its nodes)",
        leader.id
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct EvalBench {
    /// Round trips of each kind
    #[arg(long, default_value_t = 2000)]
    pub requests: u64,
    /// Stop each kind after this many seconds
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

async fn eval(target: &Target, args: &EvalBench, json: bool) -> anyhow::Result<()> {
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

#[derive(clap::Args, Debug)]
pub struct KvBench {
    /// Concurrent clients, each with its own connection and one request in flight
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Stop after this many seconds
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop after this many requests in total
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Value size in bytes
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Distinct keys written
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Linearizable reads instead of writes
    #[arg(long)]
    pub read: bool,
    /// Talk to the given node even when it is not the leader (measures forwarding)
    #[arg(long)]
    pub no_leader: bool,
}

/// Latency summary of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub ok: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Summarises latencies in microseconds.
pub fn summarise(mut micros: Vec<u64>, errors: u64, seconds: f64) -> Summary {
    micros.sort_unstable();
    let pick = |q: f64| -> f64 {
        if micros.is_empty() {
            return 0.0;
        }
        let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[i] as f64 / 1000.0
    };
    Summary {
        ok: micros.len() as u64,
        errors,
        seconds,
        per_second: micros.len() as f64 / seconds.max(1e-9),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: micros.last().map_or(0.0, |m| *m as f64 / 1000.0),
    }
}

async fn leader_addr(target: &Target) -> anyhow::Result<String> {
    let client = target.connect(None).await?;
    let status = match client.call(Op::Status).await? {
        Reply::Status(s) => s,
        other => bail!("unexpected reply {other:?}"),
    };
    let leader = status
        .leader
        .ok_or_else(|| anyhow::anyhow!("the cluster has no leader right now; retry"))?;
    status
        .members
        .iter()
        .find(|m| m.id == leader)
        .map(|m| m.addr.clone())
        .ok_or_else(|| anyhow::anyhow!("leader {leader} is not in the membership"))
}

async fn kv(target: &Target, args: &KvBench, json: bool) -> anyhow::Result<()> {
    let addr = if args.no_leader {
        target.addr(None)?
    } else {
        leader_addr(target).await?
    };
    let token = target.token()?;
    let value = Value::Bytes(vec![b'x'; args.value_size]);
    eprintln!(
        "bench kv: {} clients {} {}-byte values through {addr} for up to {} s…",
        args.clients,
        if args.read { "reading" } else { "writing" },
        args.value_size,
        args.duration
    );
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(args.requests));
    let mut clients = Vec::new();
    for _ in 0..args.clients.max(1) {
        clients.push(Client::connect(&addr, &token).await?);
    }
    if !args.read {
        // Make sure reads find keys, and warm up connections.
        clients[0]
            .call(Op::KvSet {
                map: "bench".into(),
                key: "k0".into(),
                value: value.clone(),
            })
            .await?;
    }
    eprintln!(
        "bench kv {}: {} clients against {addr}, {}-byte values, up to {:.1} s or {} requests…",
        if args.read {
            "linearizable reads"
        } else {
            "durable writes"
        },
        clients.len(),
        args.value_size,
        args.duration,
        args.requests
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let budget = budget.clone();
        let value = value.clone();
        let (read, keys) = (args.read, args.keys.max(1));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = c as u64;
            while Instant::now() < deadline
                && budget
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |b| b.checked_sub(1),
                    )
                    .is_ok()
            {
                let key = format!("k{}", i % keys);
                i += 7;
                let op = if read {
                    Op::KvGet {
                        map: "bench".into(),
                        key,
                        read: ReadMode::Linearizable,
                    }
                } else {
                    Op::KvSet {
                        map: "bench".into(),
                        key,
                        value: value.clone(),
                    }
                };
                let t = Instant::now();
                match client.call(op).await {
                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    let s = summarise(all, errors, started.elapsed().as_secs_f64());
    let params = serde_json::json!({
        "clients": args.clients, "duration": args.duration, "value_size": args.value_size,
        "keys": args.keys, "read": args.read, "via_leader": !args.no_leader,
    });
    let name = format!(
        "{} {} clients",
        if args.read {
            "linearizable reads"
        } else {
            "writes"
        },
        args.clients
    );
    report(json, "kv", params, &[(name, s)])
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match &args.command {
        BenchCommand::Kv(a) => kv(&args.target, a, args.json).await,
        BenchCommand::Eval(a) => eval(&args.target, a, args.json).await,
        BenchCommand::Deploy(a) => deploy(&args.target, a, args.json).await,
        BenchCommand::Failover(a) => failover(&args.target, a, args.json).await,
        BenchCommand::Queue(a) => queue(&args.target, a, args.json).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = summarise((1..=100).map(|i| i * 1000).collect(), 2, 2.0);
        assert_eq!(s.ok, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.per_second, 50.0);
    }
}
