//! `push lsp`: the language server (crate `push-lsp`) on stdio, with this binary's hooks for
//! finding the node (flags, environment, `.push/` above the workspace) and deploying.

use std::path::{Path, PathBuf};

use super::code::{deploy_dir, DeployArgs, DEFAULT_APP};
use super::target::Target;
use super::target::{ClusterFile, PUSH_DIR};
use crate::server::auth;

#[derive(clap::Args, Debug)]
pub struct LspArgs {
    #[command(flatten)]
    pub target: Target,
}

/// Addresses and token for a workspace: `--to`/`--token*`, `$PUSH_ADDR`/`$PUSH_TOKEN`, then the
/// nearest `.push/` at or above `root` (else the current directory); the token of a
/// `push login` to the cluster comes before that `.push/token`.
fn resolve(target: &Target, root: Option<&Path>) -> push_lsp::Targets {
    let mut found = push_lsp::Targets::default();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let start = root
        .map(Path::to_path_buf)
        .or_else(|| std::env::current_dir().ok());
    let push_dir = start.as_deref().and_then(|dir| {
        dir.ancestors()
            .map(|d| d.join(PUSH_DIR))
            .find(|d| d.join("cluster.ron").is_file() || d.join("token").is_file())
    });
    if let Some(addr) = target.addr.clone().or_else(|| env("PUSH_ADDR")) {
        found.addrs = vec![addr];
    } else if let Some(dir) = &push_dir {
        match ClusterFile::load(&dir.join("cluster.ron")) {
            Ok(file) => found.addrs = file.nodes.into_iter().map(|(_, a)| a).collect(),
            Err(e) => found.problem = Some(format!("{e:#}")),
        }
    }
    let local_token = push_dir
        .as_ref()
        .map(|d| d.join("token"))
        .filter(|f| f.is_file());
    let token_file = match (&target.token, env("PUSH_TOKEN")) {
        (Some(token), _) => {
            found.token = Some(token.clone());
            None
        }
        (None, _) if target.token_file.is_some() => target.token_file.clone(),
        (None, Some(token)) => {
            found.token = Some(token);
            None
        }
        // A `push login` for this cluster comes before the workspace's `.push/token`.
        (None, None) => match found.addrs.first().map(|a| super::credentials::lookup(a)) {
            Some(Ok(Some((secret, _)))) => {
                found.token = Some(secret);
                None
            }
            Some(Err(e)) => {
                found.problem = Some(format!("{e:#}"));
                None
            }
            _ => local_token,
        },
    };
    if let Some(file) = token_file {
        match auth::read_token(&file) {
            Ok(t) => found.token = Some(t),
            Err(e) => found.problem = Some(format!("reading {}: {e:#}", file.display())),
        }
    }
    if found.problem.is_none() {
        if found.addrs.is_empty() {
            found.problem = Some("no node address: set \"address\" in the editor's initializationOptions, pass --to HOST:PORT, set PUSH_ADDR, or run `push up` in the workspace".into());
        } else if found.token.is_none() {
            found.problem = Some("no cluster token: set \"token\" in initializationOptions, pass --token-file, set PUSH_TOKEN, or keep .push/token in the workspace".into());
        }
    }
    found
}

/// Serves LSP on stdin/stdout until the editor exits, then exits the process.
pub async fn run(args: LspArgs) -> anyhow::Result<()> {
    let target = args.target.clone();
    let hooks = push_lsp::Hooks {
        resolve: Box::new(move |root| resolve(&target, root)),
        deploy: Box::new(|addr, token, dir: PathBuf| {
            Box::pin(async move {
                let args = DeployArgs {
                    dir,
                    message: "deployed from the editor".into(),
                    no_activate: false,
                    wheels: None,
                    app: DEFAULT_APP.into(),
                    target: Target {
                        addr: Some(addr),
                        token: Some(token),
                        token_file: None,
                    },
                };
                deploy_dir(&args).await.map_err(|e| push_lsp::DeployError {
                    message: format!("{e:#}"),
                })
            })
        }),
    };
    push_lsp::run(hooks).await;
    // The editor closed the connection. Exit now: tokio's stdin reader may still sit in a
    // blocking read that would hold up the runtime's shutdown.
    std::process::exit(0)
}
