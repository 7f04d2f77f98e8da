//! `push bench`: bounded load generators printing throughput and latency percentiles. One
//! file per load (`kv`, `queue`, `eval`, `http`, `cluster` for deploy and failover, `snapshot`
//! for a big state's snapshot, install and reload, `pm` for post-mortem and tracing, `channels` for server push fan-out); this one holds the
//! arguments, the summary and the report they share.

mod channels;
mod cluster;
mod eval;
mod http;
mod kv;
mod pm;
mod queue;
mod snapshot;

pub use channels::ChannelsBench;
pub use cluster::{DeployBench, FailoverBench};
pub use eval::EvalBench;
pub use http::HttpBench;
pub use kv::KvBench;
pub use pm::PmBench;
pub use queue::QueueBench;
pub use snapshot::SnapshotBench;

use anyhow::bail;
use push_protocol::{Op, Reply};

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
pub(super) fn report(
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
    /// HTTP keep-alive load on an app URL; --compare-workers N: 1 worker against N
    Http(HttpBench),
    /// Local nodes only: a state of N kv keys snapshotted, installed on a fresh joiner and
    /// reloaded on restart; times and each node's peak RSS
    Snapshot(SnapshotBench),
    /// Post-mortem: opening a kept failure and evaluating in its frame (round trips), and
    /// the time tracing adds to each call of a traced function
    Pm(PmBench),
    /// N SSE subscribers (default 1,000) spread over the nodes read one channel while events
    /// are published at a steady rate: publish→receive p50/p99, delivered/expected
    Channels(ChannelsBench),
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

pub(super) async fn leader_addr(target: &Target) -> anyhow::Result<String> {
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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match &args.command {
        BenchCommand::Kv(a) => kv::kv(&args.target, a, args.json).await,
        BenchCommand::Eval(a) => eval::eval(&args.target, a, args.json).await,
        BenchCommand::Deploy(a) => cluster::deploy(&args.target, a, args.json).await,
        BenchCommand::Failover(a) => cluster::failover(&args.target, a, args.json).await,
        BenchCommand::Queue(a) => queue::queue(&args.target, a, args.json).await,
        BenchCommand::Http(a) => http::http(a, args.json).await,
        BenchCommand::Snapshot(a) => snapshot::snapshot(a, args.json).await,
        BenchCommand::Pm(a) => pm::pm(&args.target, a, args.json).await,
        BenchCommand::Channels(a) => channels::channels(&args.target, a, args.json).await,
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
