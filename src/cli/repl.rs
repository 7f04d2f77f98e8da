//! `push repl`: attach the terminal REPL (crate `push-repl`) to a node.

use std::path::PathBuf;

use super::code::{deploy_dir, DeployArgs};
use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct ReplArgs {
    /// Node to attach to [default: --to, $PUSH_ADDR, or node 1 of `push up`]
    #[arg(value_name = "HOST:PORT")]
    pub node: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

fn history_file() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PUSH_HISTORY") {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    std::env::var("HOME")
        .ok()
        .map(|home| PathBuf::from(home).join(".push_history"))
}

/// Runs the REPL on the current thread (a blocking one) and returns its exit code.
pub fn run_repl(addr: String, token: String) -> i32 {
    let handle = tokio::runtime::Handle::current();
    let hook_handle = handle.clone();
    let hooks = push_repl::Hooks {
        deploy: Box::new(move |addr, token, app, dir| {
            let args = DeployArgs {
                dir: PathBuf::from(dir),
                message: "deployed from the REPL".into(),
                no_activate: false,
                wheels: None,
                app: app.into(),
                target: Target {
                    addr: Some(addr.into()),
                    token: Some(token.into()),
                    token_file: None,
                },
            };
            hook_handle
                .block_on(deploy_dir(&args))
                .map_err(|e| push_repl::DeployError {
                    message: format!("{e:#}"),
                })
        }),
    };
    push_repl::run(
        push_repl::Config {
            addr,
            token,
            history: history_file(),
        },
        hooks,
        handle,
    )
}

pub async fn run(args: ReplArgs) -> anyhow::Result<()> {
    let addr = args.target.addr(args.node.as_deref())?;
    let (token, _) = args.target.token_for(Some(&addr))?;
    let code = tokio::task::spawn_blocking(move || run_repl(addr, token)).await?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
