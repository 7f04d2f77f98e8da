//! Which node a command talks to and with which token: flags, then environment, then the
//! `.push/` directory that `push up` writes (its layout, [`ClusterFile`], is defined here).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use push_protocol::Client;
use serde::{Deserialize, Serialize};

use crate::server::auth;

/// Address and token flags shared by client subcommands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Target {
    /// Node to talk to, HOST:PORT [default: $PUSH_ADDR, else node 1 of `push up` in ./.push]
    #[arg(long = "to", short = 'a', value_name = "HOST:PORT", global = true)]
    pub addr: Option<String>,
    /// Cluster token [default: $PUSH_TOKEN, else ./.push/token]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the cluster token from this file
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl Target {
    /// The address: `positional`, `--to`, `$PUSH_ADDR`, or node 1 from `.push/cluster.ron`.
    pub fn addr(&self, positional: Option<&str>) -> anyhow::Result<String> {
        self.candidates(positional).map(|mut c| c.remove(0))
    }

    /// Addresses to try in order: the one given, or every node `push up` recorded (so a
    /// command still works while node 1 is down).
    pub fn candidates(&self, positional: Option<&str>) -> anyhow::Result<Vec<String>> {
        if let Some(a) = positional.map(str::to_string).or_else(|| self.addr.clone()) {
            return Ok(vec![a]);
        }
        if let Ok(a) = std::env::var("PUSH_ADDR") {
            if !a.is_empty() {
                return Ok(vec![a]);
            }
        }
        let cluster = Path::new(PUSH_DIR).join("cluster.ron");
        if cluster.exists() {
            let file = ClusterFile::load(&cluster)?;
            if !file.nodes.is_empty() {
                return Ok(file.nodes.into_iter().map(|(_, addr)| addr).collect());
            }
        }
        bail!("no node address: pass HOST:PORT (or --to HOST:PORT), set PUSH_ADDR, or run `push up` in this directory first")
    }

    /// The token: `--token`, `--token-file`, `$PUSH_TOKEN`, the secret `push login` stored
    /// for the node this command talks to, or `.push/token`.
    pub fn token(&self) -> anyhow::Result<String> {
        self.token_for(self.addr(None).ok().as_deref())
            .map(|(token, _)| token)
    }

    /// The token for talking to `addr` (a user's `push login` is per cluster) and where it
    /// came from, for a refusal to name.
    pub fn token_for(&self, addr: Option<&str>) -> anyhow::Result<(String, String)> {
        if let Some(t) = &self.token {
            return Ok((t.clone(), "--token".into()));
        }
        if let Some(f) = &self.token_file {
            let token = auth::read_token(f)
                .with_context(|| format!("reading token file {}", f.display()))?;
            return Ok((token, format!("--token-file {}", f.display())));
        }
        let local = Path::new(PUSH_DIR).join("token");
        if let Ok(t) = std::env::var("PUSH_TOKEN") {
            if !t.is_empty() {
                let note = if local.exists() {
                    format!(
                        "$PUSH_TOKEN, which overrides {}; `unset PUSH_TOKEN` to use that file",
                        local.display()
                    )
                } else {
                    "$PUSH_TOKEN".into()
                };
                return Ok((t, note));
            }
        }
        if let Some(found) = addr.map(super::credentials::lookup).transpose()?.flatten() {
            return Ok(found);
        }
        if local.exists() {
            let token =
                auth::read_token(&local).with_context(|| format!("reading {}", local.display()))?;
            return Ok((token, local.display().to_string()));
        }
        bail!("no cluster token: pass --token or --token-file, set PUSH_TOKEN, `push login HOST:PORT` with a user secret, or run from the directory where `push up` wrote .push/token (a node started with `push node` keeps its token in DATA/token)")
    }

    /// Connects to the first reachable candidate node.
    pub async fn connect(&self, positional: Option<&str>) -> anyhow::Result<Client> {
        let candidates = self.candidates(positional)?;
        let (token, source) = self.token_for(candidates.first().map(String::as_str))?;
        let mut last = None;
        for addr in candidates {
            match Client::connect(&addr, &token).await {
                Ok(client) => return Ok(client),
                // A refused token or version is the same everywhere: say it at once.
                Err(e) if e.code() == Some(push_protocol::ErrorCode::Unauthorized) => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("{addr} refused the token from {source}")));
                }
                Err(e) if e.code().is_some() => return Err(e.into()),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow::anyhow!("no node to connect to")))
    }
}

/// Where `push up` keeps its cluster, relative to the working directory.
pub const PUSH_DIR: &str = ".push";

/// What `push up` remembers between runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterFile {
    pub nodes: Vec<(u64, String)>,
    /// Each node's HTTP address for app handlers, in the order of `nodes`.
    #[serde(default)]
    pub http: Vec<String>,
}

impl ClusterFile {
    pub fn load(path: &Path) -> anyhow::Result<ClusterFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        ron::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid cluster file; delete it to start afresh",
                path.display()
            )
        })
    }
}
