//! The command line: one `push` binary, one file per subcommand.

pub mod audit;
pub mod backup;
pub mod bench;
pub mod code;
pub mod credentials;
pub mod deps;
pub mod errors;
pub mod eval;
pub mod export;
pub mod kernel;
pub mod kv;
pub mod login;
pub mod logs;
pub mod lsp;
pub mod members;
pub mod node;
pub mod pipe;
pub mod platforms;
pub mod progress;
pub mod publish;
pub mod queue;
pub mod repl;
pub mod settings;
pub mod status;
pub mod target;
pub mod tasks;
pub mod tls;
pub mod top;
pub mod up;
pub mod user;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// `push --version`: the release and the CPython this binary embeds (set by build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (CPython ",
    env!("PUSH_PYTHON_VERSION"),
    ", built with ",
    env!("PUSH_PYTHON_EXECUTABLE"),
    ")"
);

/// Push: a fault-tolerant application server for Python code.
#[derive(Parser, Debug)]
#[command(name = "push", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Speak TLS to nodes, trusting this CA certificate (PEM); nodes use it to verify peers
    #[arg(long, global = true, env = "PUSH_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
}

/// `push worker`: started by `push node`, never by hand.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The file descriptor of the socket to the node
    #[arg(long)]
    pub fd: i32,
    /// Python threads
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// The worker's name in logs ("w1", "gate")
    #[arg(long, default_value = "worker")]
    pub label: String,
}

impl WorkerArgs {
    /// The arguments of `push worker --fd N --threads N --label L` (as a node starts its
    /// workers), read without building the whole command line's parser, which a worker has
    /// no use for (0.4 MB less anonymous memory per worker, measured).
    /// `None` for anything else, which [`Cli`] parses (and refuses) as usual.
    pub fn from_argv(args: &[String]) -> Option<WorkerArgs> {
        let (first, rest) = args.get(1..)?.split_first()?;
        if first != "worker" || rest.len() % 2 != 0 {
            return None;
        }
        let mut out = WorkerArgs {
            fd: -1,
            threads: 4,
            label: "worker".into(),
        };
        for pair in rest.chunks(2) {
            match pair[0].as_str() {
                "--fd" => out.fd = pair[1].parse().ok()?,
                "--threads" => out.threads = pair[1].parse().ok()?,
                "--label" => out.label = pair[1].clone(),
                _ => return None,
            }
        }
        (out.fd >= 0).then_some(out)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a local 3-node cluster on 127.0.0.1 with data under .push/ and open a REPL on
    /// node 1 (Ctrl-D or `:quit` stops the cluster; without a terminal, Ctrl-C).
    Up(up::UpArgs),
    /// Run one node.
    Node(Box<node::NodeArgs>),
    /// Internal: a Python worker process; `push node` starts these itself.
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Show every node of the cluster: role, term, log and applied index, lag, HEAD.
    Status(status::StatusArgs),
    /// Store a directory of Python modules as a new version (and make it HEAD).
    Deploy(code::DeployArgs),
    /// List an app's versions; `*` marks HEAD.
    Versions(code::VersionsArgs),
    /// List the Python environments of apps' dependencies: size here, versions using them.
    Envs(deps::EnvsArgs),
    /// Move HEAD back to the previous version, or to VERSION.
    Rollback(code::RollbackArgs),
    /// Unified diff between two versions.
    Diff(code::DiffArgs),
    /// Attach the REPL to a node: Python inside the running cluster.
    Repl(repl::ReplArgs),
    /// Evaluate Python on a live node (stdin when CODE is `-` or absent); --all runs it on every
    /// node, --module M inside a loaded module (a hot patch).
    Eval(eval::EvalArgs),
    /// Read and write replicated key-value maps.
    Kv(kv::KvArgs),
    /// Publish an event on an app's channel; every node's subscribers of
    /// GET /_push/channels/CHANNEL receive it.
    Publish(publish::PublishArgs),
    /// Every queue: ready, leased, puts, acks.
    Queues(queue::QueuesArgs),
    /// The first N ready items of a queue, without taking them.
    Peek(queue::PeekArgs),
    /// Daemons, partition handlers and schedules: node, state, restarts, version.
    Daemons(tasks::DaemonsArgs),
    /// Restart a daemon wherever it runs.
    Restart(tasks::RestartArgs),
    /// A daemon's log lines (-f follows).
    Tail(tasks::TailArgs),
    /// Recent structured log records from every node (node events, app `logging`); -f follows.
    Logs(logs::LogsArgs),
    /// Failures kept on the cluster's Python workers (handlers, daemons, schedules, lambdas
    /// that raised), newest first; open one in the REPL with `:pm ID`.
    Errors(errors::ErrorsArgs),
    /// Timeseries: every series, or the newest points of one.
    Ts(tasks::TsArgs),
    /// Registered nodes: capabilities (cores, memory, GPU, tags) and liveness.
    Registry(tasks::DaemonsArgs),
    /// Who deployed, rolled back, restarted, evaluated or hot-patched what, and when.
    Audit(audit::AuditArgs),
    /// Make a private CA and a node certificate for running the cluster with TLS.
    TlsInit(tls::TlsInitArgs),
    /// Load generators that print throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Live terminal dashboard: nodes, queues, daemons, deploys and audit (q quits).
    Top(top::TopArgs),
    /// The cluster's users and roles: add (prints a secret once), list, revoke, rotate.
    User(user::UserArgs),
    /// Store a user's secret (read from stdin) for a cluster, for the CLI, REPL and editors.
    Login(login::LoginArgs),
    /// Forget the stored secret for a cluster.
    Logout(login::LogoutArgs),
    /// An app's secrets: set (value from stdin), list (names only), get (admins), rm.
    Secret(settings::SecretArgs),
    /// An app's config entries: set, get, list, rm. Running code sees changes on its next read.
    Config(settings::ConfigArgs),
    /// Language server on stdio for editors: live completion, hover, eval, deploy.
    Lsp(lsp::LspArgs),
    /// Jupyter: `push kernel install --to HOST:PORT [--user | --prefix P]` installs a kernel
    /// whose cells run on that node (needs push_client: `pip install ./pyclient ipykernel`).
    Kernel(kernel::KernelArgs),
    /// Remove a node (dead or alive) from the cluster's members; refused if the voters left
    /// would lose their majority.
    Remove(members::RemoveArgs),
    /// Make a learner (a node started with --learner) a voter.
    Promote(members::PromoteArgs),
    /// Write a version's files (VERSION or APP@VERSION) into a directory, as deployed.
    Export(export::ExportArgs),
    /// Copy the replicated state (code, kv, queues, timeseries, audit, users) at a committed
    /// index into FILE, checksummed; works against any node, under load.
    Backup(backup::BackupArgs),
    /// Seed a new cluster's first node from a backup FILE into --data DIR (new token unless
    /// --keep-token).
    Restore(backup::RestoreArgs),
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(ca) = &cli.tls_ca {
        let config = push_protocol::tls::client_config(ca)
            .with_context(|| format!("using --tls-ca {}", ca.display()))?;
        push_protocol::tls::use_for_clients(config);
    }
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Worker(_) => anyhow::bail!("`push worker` runs outside the async runtime (main)"),
        Command::Node(mut args) => {
            args.tls_ca = cli.tls_ca;
            node::run(*args).await
        }
        Command::Status(args) => status::run(args).await,
        Command::Deploy(args) => code::deploy(args).await,
        Command::Versions(args) => code::versions(args).await,
        Command::Envs(args) => deps::envs(args).await,
        Command::Rollback(args) => code::rollback(args).await,
        Command::Diff(args) => code::diff(args).await,
        Command::Repl(args) => repl::run(args).await,
        Command::Eval(args) => eval::run(args).await,
        Command::Kv(args) => kv::run(args).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Queues(args) => queue::queues(args).await,
        Command::Peek(args) => queue::peek(args).await,
        Command::Daemons(args) => tasks::daemons(args).await,
        Command::Restart(args) => tasks::restart(args).await,
        Command::Tail(args) => tasks::tail(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Errors(args) => errors::run(args).await,
        Command::Ts(args) => tasks::ts(args).await,
        Command::Registry(args) => tasks::registry(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::TlsInit(args) => tls::run(args),
        Command::Bench(args) => bench::run(args).await,
        Command::Lsp(args) => lsp::run(args).await,
        Command::Kernel(args) => kernel::run(args),
        Command::Top(args) => top::run(args).await,
        Command::User(args) => user::run(args).await,
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(args).await,
        Command::Remove(args) => members::remove(args).await,
        Command::Promote(args) => members::promote(args).await,
        Command::Export(args) => export::run(args).await,
        Command::Secret(args) => settings::secret(args).await,
        Command::Config(args) => settings::config(args).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn a_workers_arguments_are_read_as_clap_reads_them_and_anything_else_is_left_to_clap() {
        use clap::Parser;
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        for line in [
            "push worker --fd 3 --threads 4 --label w1",
            "push worker --label gate --fd 7",
            "push worker --fd 5",
        ] {
            let quick = super::WorkerArgs::from_argv(&argv(line)).expect(line);
            let super::Command::Worker(clap) = super::Cli::parse_from(argv(line)).command else {
                panic!("{line}: not a worker");
            };
            assert_eq!(
                (quick.fd, quick.threads, quick.label),
                (clap.fd, clap.threads, clap.label),
                "{line}"
            );
        }
        for line in [
            "push worker",
            "push worker --fd",
            "push worker --fd x",
            "push worker --fd 3 --other 1",
            "push node --fd 3",
            "push",
        ] {
            assert!(
                super::WorkerArgs::from_argv(&argv(line)).is_none(),
                "{line}"
            );
        }
    }
}
