//! `push queues` and `push peek`: queues from the shell.

use anyhow::bail;
use push_protocol::{Op, Reply};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct QueuesArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct PeekArgs {
    /// Queue name
    pub queue: String,
    /// How many ready items
    #[arg(default_value_t = 10)]
    pub n: usize,
    #[command(flatten)]
    pub target: Target,
}

pub async fn queues(args: QueuesArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let Reply::QueueStats(stats) = client.call(Op::QueueStats).await? else {
        bail!("unexpected reply");
    };
    print!("{}", push_repl::commands::queue_table(&stats));
    Ok(())
}

pub async fn peek(args: PeekArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let Reply::Peeked(items) = client
        .call(Op::QueuePeek {
            queue: args.queue.clone(),
            n: args.n,
        })
        .await?
    else {
        bail!("unexpected reply");
    };
    if items.is_empty() {
        println!("{} has no ready items", args.queue);
    }
    for item in items {
        println!("#{:<8} {}", item.id, item.value);
    }
    Ok(())
}
