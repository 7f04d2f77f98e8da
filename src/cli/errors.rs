//! `push errors`: the failures kept on the cluster's Python workers (unhandled exceptions of
//! handlers, daemons, schedules and lambdas), newest first, with the ids `:pm` opens.

use anyhow::bail;
use push_protocol::{DebugAction, DebugReply, Op, Reply};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct ErrorsArgs {
    /// Any node of the cluster
    #[arg(value_name = "HOST:PORT")]
    pub node: Option<String>,
    /// One JSON object per failure instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

pub async fn run(args: ErrorsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(args.node.as_deref()).await?;
    let op = Op::Debug {
        action: DebugAction::Errors,
        here: false,
        scope: vec![],
    };
    let (rows, missing) = match client.call(op).await? {
        Reply::Debug(DebugReply::Errors { rows, missing }) => (rows, missing),
        other => bail!("unexpected reply {other:?}"),
    };
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        for (node, why) in &missing {
            eprintln!("node {node} not asked: {why}");
        }
    } else {
        print!("{}", push_repl::pm::errors_table(&rows, &missing));
        if !rows.is_empty() {
            println!("open one in the REPL with `:pm ID` (`push repl`)");
        }
    }
    Ok(())
}
