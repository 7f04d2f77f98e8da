//! `push daemons`, `push restart`, `push tail`, `push ts`, `push registry`: tasks and
//! timeseries from the shell, with the same views as the REPL's meta commands.

use anyhow::bail;
use push_protocol::{Op, ReadMode, Reply, DEFAULT_APP};
use push_repl::views;

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct DaemonsArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    /// Daemon name (all its replicas and partitions restart)
    pub name: String,
    /// Only in this app (default: every app that has it)
    #[arg(long)]
    pub app: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// Daemon or schedule name
    pub name: String,
    /// Keep printing new lines until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
    #[arg(long)]
    pub app: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct TsArgs {
    /// Series name (none: list every series)
    pub name: Option<String>,
    /// How many of the newest points
    #[arg(long, default_value_t = 20)]
    pub last: usize,
    /// The app whose realm holds the series
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
    #[command(flatten)]
    pub target: Target,
}

pub async fn daemons(args: DaemonsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let Reply::Daemons(rows) = client.call(Op::Daemons).await? else {
        bail!("unexpected reply");
    };
    print!("{}", views::daemon_table(&rows));
    Ok(())
}

pub async fn registry(args: DaemonsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let Reply::Nodes(entries) = client.call(Op::Nodes).await? else {
        bail!("unexpected reply");
    };
    print!("{}", views::registry_table(&entries));
    Ok(())
}

pub async fn restart(args: RestartArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let op = Op::Restart {
        app: args.app,
        name: args.name,
    };
    let Reply::Restarted { units } = client.call(op).await? else {
        bail!("unexpected reply");
    };
    println!("restarting {}", units.join(", "));
    Ok(())
}

pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    views::tail(&client, args.app, &args.name, args.follow, stop)
        .await
        .map_err(anyhow::Error::msg)
}

pub async fn ts(args: TsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    match args.name {
        None => {
            let Reply::TsStats(mut stats) = client.call(Op::TsStats).await? else {
                bail!("unexpected reply");
            };
            push_protocol::realm::keep_local(&args.app, &mut stats, |s| &mut s.name);
            print!("{}", views::ts_table(&stats));
        }
        Some(series) => {
            let op = Op::TsRange {
                series: push_protocol::realm::qualify(&args.app, &series)?,
                t0: None,
                t1: None,
                last: Some(args.last),
                read: ReadMode::Linearizable,
            };
            let Reply::Points(points) = client.call(op).await? else {
                bail!("unexpected reply");
            };
            if points.is_empty() {
                println!("{series} has no points");
            }
            print!("{}", views::points_text(&points));
        }
    }
    Ok(())
}
