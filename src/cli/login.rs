//! `push login HOST:PORT` and `push logout HOST:PORT`: keep a user's secret for a cluster in
//! the credentials file (see [`super::credentials`]), checked with the node before it is kept.

use std::io::BufRead;

use anyhow::{bail, Context};
use push_protocol::{Client, Op, Reply, UserSecret};

use super::credentials::{self, Credentials, Login};

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Any node of the cluster
    #[arg(value_name = "HOST:PORT")]
    pub node: String,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// Any node of the cluster logged in to
    #[arg(value_name = "HOST:PORT")]
    pub node: String,
}

fn credentials_path() -> anyhow::Result<std::path::PathBuf> {
    credentials::path().context("neither XDG_CONFIG_HOME nor HOME is set, so there is no place for the credentials file; set HOME")
}

/// Reads the secret from stdin (the first line), checks it with the node, and stores it for
/// every node of that cluster.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let path = credentials_path()?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("secret for {} (from `push user add`): ", args.node);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    let secret = line.trim().to_string();
    if UserSecret::parse(&secret).is_none() {
        bail!("that is not a user secret (push_ACCESSOR_SECRET, as `push user add` prints it); the cluster token needs no login");
    }
    let client = Client::connect(&args.node, &secret)
        .await
        .with_context(|| format!("logging in to {}", args.node))?;
    let Reply::WhoAmI(me) = client.call(Op::WhoAmI).await? else {
        bail!("unexpected reply from the node");
    };
    let mut nodes = vec![args.node.clone()];
    if let Ok(Reply::Status(status)) = client.call(Op::Status).await {
        nodes.extend(status.members.into_iter().map(|m| m.addr));
    }
    nodes.sort();
    nodes.dedup();
    let mut credentials = Credentials::load(&path)?;
    credentials.put(Login {
        nodes,
        user: me.user.clone(),
        secret,
    });
    credentials.save(&path)?;
    println!(
        "logged in to {} as {}; the secret is kept in {}",
        args.node,
        me.describe(),
        path.display()
    );
    Ok(())
}

/// Forgets the login of the cluster with a node at the given address.
pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let path = credentials_path()?;
    let mut credentials = Credentials::load(&path)?;
    if !credentials.remove(&args.node) {
        bail!(
            "no login for {} in {}; nothing to forget",
            args.node,
            path.display()
        );
    }
    credentials.save(&path)?;
    println!("logged out of {}", args.node);
    Ok(())
}
