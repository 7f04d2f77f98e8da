//! `push queues` and `push peek`: queues from the shell, in the realm of `--app`.

use anyhow::bail;
use push_protocol::{realm, Op, Reply, DEFAULT_APP};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct QueuesArgs {
    /// The app whose queues to list
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
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
    /// The app whose realm holds the queue
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
    #[command(flatten)]
    pub target: Target,
}

pub async fn queues(args: QueuesArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let Reply::QueueStats(mut stats) = client.call(Op::QueueStats).await? else {
        bail!("unexpected reply");
    };
    realm::keep_local(&args.app, &mut stats, |s| &mut s.name);
    print!("{}", push_repl::views::queue_table(&stats));
    Ok(())
}

pub async fn peek(args: PeekArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let Reply::Peeked(items) = client
        .call(Op::QueuePeek {
            queue: realm::qualify(&args.app, &args.queue)?,
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
