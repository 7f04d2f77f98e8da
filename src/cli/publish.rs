//! `push publish CHANNEL DATA`: one event on an app's channel, from the shell.

use anyhow::bail;
use push_protocol::{Op, Reply, DEFAULT_APP};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// Channel name (subscribers read it at GET /_push/channels/CHANNEL on any node)
    pub channel: String,
    /// The event's data (text; `-` reads it from stdin)
    pub data: String,
    /// The app whose channel it is
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
    #[command(flatten)]
    pub target: Target,
}

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let data = if args.data == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| anyhow::anyhow!("reading the event's data from stdin: {e}"))?;
        text
    } else {
        args.data
    };
    let client = args.target.connect(None).await?;
    let Reply::Published { id, .. } = client
        .call(Op::Publish {
            app: args.app,
            channel: args.channel.clone(),
            data,
        })
        .await?
    else {
        bail!("unexpected reply to a publish");
    };
    println!("published event {id} on {}", args.channel);
    Ok(())
}
