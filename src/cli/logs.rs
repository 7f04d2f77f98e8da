//! `push logs`: the cluster's recent structured log records (node events and app `logging`
//! records), gathered from every node; `--follow` polls with per-node cursors.

use std::time::Duration;

use anyhow::{bail, Context};
use push_protocol::{LogRecord, Op, Reply};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Any node of the cluster
    #[arg(value_name = "HOST:PORT")]
    pub node: Option<String>,
    /// Keep printing new records until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
    /// Only records logged by this daemon (or schedule, or partition handler)
    #[arg(long, value_name = "NAME")]
    pub daemon: Option<String>,
    /// Only records at this level or above: error, warn, info, debug
    #[arg(long)]
    pub level: Option<String>,
    /// One JSON object per record instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// How often `--follow` asks for new records.
const POLL: Duration = Duration::from_millis(500);

fn print(record: &LogRecord, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(record).context("encoding a log record as JSON")?
        );
    } else {
        println!("{}", crate::logs::format_line(record));
    }
    Ok(())
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(args.node.as_deref()).await?;
    let mut after: Vec<(u64, u64)> = Vec::new();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let op = Op::Logs {
            after: after.clone(),
            daemon: args.daemon.clone(),
            level: args.level.clone(),
            here: false,
        };
        let records = match client.call(op).await? {
            Reply::Logs(records) => records,
            other => bail!("unexpected reply {other:?}; is the node a different push version?"),
        };
        for r in &records {
            print(r, args.json)?;
            match after.iter_mut().find(|(n, _)| *n == r.node) {
                Some(entry) => entry.1 = entry.1.max(r.seq),
                None => after.push((r.node, r.seq)),
            }
        }
        if !args.follow {
            return Ok(());
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
