//! `push audit`: the replicated audit log from the shell, with the REPL's `:audit` view.

use push_repl::views;

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// How many of the newest entries to show first
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    /// Only this kind: deploy, activate, rollback, restart, eval, hot-patch, run
    #[arg(long)]
    pub action: Option<String>,
    /// Keep printing new entries until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
    /// Print entries as JSON lines (no following)
    #[arg(long, conflicts_with = "follow")]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    if args.json {
        let op = push_protocol::Op::Audit {
            after: 0,
            limit: args.limit,
            action: args.action,
        };
        let push_protocol::Reply::Audit(entries) = client.call(op).await? else {
            anyhow::bail!("unexpected reply from the node");
        };
        for e in entries {
            println!("{}", serde_json::to_string(&e)?);
        }
        return Ok(());
    }
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    views::audit(&client, args.action, args.limit, args.follow, stop)
        .await
        .map_err(anyhow::Error::msg)
}
