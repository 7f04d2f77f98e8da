//! `push kv`: the replicated key-value maps from the shell, in the realm of `--app` (default
//! `main`). Values are JSON (else strings).

use anyhow::bail;
use push_protocol::{realm, Op, ReadMode, Reply, Value, DEFAULT_APP};

use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct KvArgs {
    #[command(subcommand)]
    pub command: KvCommand,
    /// The app whose realm holds the map
    #[arg(long, global = true, default_value = DEFAULT_APP)]
    pub app: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Subcommand, Debug)]
pub enum KvCommand {
    /// Print the value of KEY
    Get {
        map: String,
        key: String,
        /// Read this node's applied state without confirming leadership (may be behind)
        #[arg(long)]
        stale: bool,
    },
    /// Set KEY to VALUE (JSON, else a string)
    Set {
        map: String,
        key: String,
        value: String,
    },
    /// Delete KEY
    Del { map: String, key: String },
    /// Set KEY to NEW only if it currently equals EXPECTED ("-" means absent / delete)
    Cas {
        map: String,
        key: String,
        expected: String,
        new: String,
    },
    /// List keys, optionally by prefix
    List {
        map: String,
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long)]
        stale: bool,
    },
}

fn mode(stale: bool) -> ReadMode {
    if stale {
        ReadMode::Stale
    } else {
        ReadMode::Linearizable
    }
}

fn optional(text: &str) -> Option<Value> {
    (text != "-").then(|| Value::parse_cli(text))
}

pub async fn run(args: KvArgs) -> anyhow::Result<()> {
    let app = args.app;
    let client = args.target.connect(None).await?;
    let stored = |map: String| realm::qualify(&app, &map);
    let op = match args.command {
        KvCommand::Get { map, key, stale } => Op::KvGet {
            map: stored(map)?,
            key,
            read: mode(stale),
        },
        KvCommand::Set { map, key, value } => Op::KvSet {
            map: stored(map)?,
            key,
            value: Value::parse_cli(&value),
        },
        KvCommand::Del { map, key } => Op::KvDelete {
            map: stored(map)?,
            key,
        },
        KvCommand::Cas {
            map,
            key,
            expected,
            new,
        } => Op::KvCas {
            map: stored(map)?,
            key,
            expected: optional(&expected),
            new: optional(&new),
        },
        KvCommand::List { map, prefix, stale } => Op::KvList {
            map: stored(map)?,
            prefix,
            read: mode(stale),
        },
    };
    match client.call(op).await? {
        Reply::Value(Some(v)) => println!("{v}"),
        Reply::Value(None) => bail!("no such key"),
        Reply::Written { index } => println!("ok (log index {index})"),
        Reply::Deleted { existed: true, .. } => println!("deleted"),
        Reply::Deleted { existed: false, .. } => println!("no such key (nothing deleted)"),
        Reply::Cas { ok: true, .. } => println!("ok"),
        Reply::Cas {
            ok: false, current, ..
        } => {
            bail!(
                "not set: the current value is {}",
                current.map_or("absent".to_string(), |v| v.to_string())
            )
        }
        Reply::Keys(keys) => {
            for k in keys {
                println!("{k}");
            }
        }
        other => bail!("unexpected reply {other:?}"),
    }
    Ok(())
}
