//! Membership from the shell: `push remove ID` and `push promote ID` (joining is `push node
//! --join`, as a learner with `--learner`; leaving on shutdown is `push node --leave`).

use anyhow::bail;
use push_protocol::{Op, Reply};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The id of the node to remove (a voter or a learner, running or dead)
    pub id: u64,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    /// The id of the learner to make a voter
    pub id: u64,
    #[command(flatten)]
    pub target: Target,
}

/// Sends a membership change and prints the members after it.
async fn change(target: &Target, op: Op, done: &str) -> anyhow::Result<()> {
    let client = target.connect(None).await?;
    match client.call(op).await? {
        Reply::Joined { members } => {
            println!(
                "{done}; members now: {}",
                crate::node::membership::describe(&members)
            );
            Ok(())
        }
        other => bail!("unexpected reply {other:?}"),
    }
}

pub async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let done = format!("removed node {}", args.id);
    change(&args.target, Op::Remove { id: args.id }, &done).await
}

pub async fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    let done = format!("node {} is a voter", args.id);
    change(&args.target, Op::Promote { id: args.id }, &done).await
}
