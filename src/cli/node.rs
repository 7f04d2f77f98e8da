//! `push node`: arguments → a checked [`NodeConfig`] → [`crate::assemble::run`].

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{LogFormat, NodeConfig, NodeFile};

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// RON config file; flags override its fields
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster; remembered in the data dir)
    #[arg(long)]
    pub id: Option<u64>,
    /// Address to listen on for clients and peers [default: 127.0.0.1:7001]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Serve the app's HTTP handlers on this address
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Python threads in each worker process [default: 4]
    #[arg(long)]
    pub py_threads: Option<usize>,
    /// Python worker processes that run the app's code [default: cores, at least 2]
    #[arg(long, value_name = "N")]
    pub py_workers: Option<usize>,
    /// Threads of the node's own async runtime (Raft, peers, clients, the HTTP front) [default:
    /// half the cores, at least 1: the Python workers need the others]
    #[arg(long, value_name = "N", env = "PUSH_IO_THREADS")]
    pub io_threads: Option<usize>,
    /// Restart a Python worker whose resident memory passes this many MiB [default: no limit]
    #[arg(long, value_name = "MIB")]
    pub py_worker_max_rss: Option<u64>,
    /// Keep the dependency environments of each app's last K versions installed (rollback
    /// to them needs no reinstall); older unused ones are removed [default: 5]
    #[arg(long, value_name = "K")]
    pub keep_envs: Option<usize>,
    /// Data directory (raft log, snapshots, token)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Join the cluster that the node at HOST:PORT belongs to
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// File holding the cluster token (a new cluster creates DATA/token)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Raft heartbeat interval in ms (default 40)
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in ms (default 100)
    #[arg(long)]
    pub election_min_ms: Option<u64>,
    /// Maximum election timeout in ms, also the leader's lease (default 160)
    #[arg(long)]
    pub election_max_ms: Option<u64>,
    /// Build a snapshot every N applied entries
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot
    #[arg(long)]
    pub keep_logs: Option<u64>,
    /// A capability tag for daemon placement (`where="gpu"`); repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Declare whether this node has a GPU (default: detected).
    #[arg(long, value_name = "BOOL")]
    pub gpu: Option<bool>,
    /// Dial peer ID at ADDR instead of its advertised address (a tunnel, a sidecar, a fault
    /// proxy); repeat for several peers
    #[arg(long = "peer-via", value_name = "ID=HOST:PORT", value_parser = parse_peer_via)]
    pub peer_via: Vec<(u64, String)>,
    /// Log format: "text" or "json" [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key and --tls-ca
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA of --tls-ca (a global flag): it verifies peers
    #[arg(skip)]
    pub tls_ca: Option<PathBuf>,
    /// Client connections the node's address holds at once [default: from the fd limit]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// HTTP connections serving requests at once; more get a 503 [default: from the fd limit]
    #[arg(long, value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// Connections one IP may hold on the node's address [default: no cap]
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Connections one IP may hold on the HTTP port [default: no cap]
    #[arg(long, value_name = "N")]
    pub http_max_connections_per_ip: Option<usize>,
    /// Time a new connection has to send its hello, in ms [default: 5000]
    #[arg(long, value_name = "MS")]
    pub hello_timeout_ms: Option<u64>,
    /// Time an HTTP connection has to send a request head (also the keep-alive idle
    /// timeout), in ms [default: 10000]
    #[arg(long, value_name = "MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// Time an HTTP request has to send its body, in ms [default: 30000]
    #[arg(long, value_name = "MS")]
    pub http_body_timeout_ms: Option<u64>,
    /// Largest HTTP request body in bytes; a larger one gets 413 [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    pub http_max_body: Option<u64>,
    /// Largest HTTP request head (request line and headers) in bytes; a larger one gets 431
    /// [default: 65536, at least 8192]
    #[arg(long, value_name = "BYTES")]
    pub http_max_head: Option<u64>,
    /// Join (with --join) as a learner: a non-voting member that replicates and serves reads;
    /// `push promote ID` makes it a voter
    #[arg(long)]
    pub learner: bool,
    /// On Ctrl-C/SIGTERM, ask the cluster to remove this node (and wait for it) before
    /// exiting, instead of staying a member that is down
    #[arg(long)]
    pub leave: bool,
    /// Run as the release of format N would: write, read and speak formats up to N only
    /// (the previous release's format, for rehearsing a rolling upgrade with one binary)
    #[arg(long, value_name = "N", env = "PUSH_FORMAT", hide = true)]
    pub format: Option<u32>,
}

impl NodeArgs {
    /// How many threads the node's async runtime gets (`--io-threads`); read before the
    /// runtime exists, so it is a flag (or `PUSH_IO_THREADS`), not a `node.ron` field.
    ///
    /// Half the cores by default, measured on 2 cores against a runtime with one thread per
    /// core (interleaved, dev build): a 1-client put p50 0.617 → 0.576 ms and 30 → 21 context
    /// switches per write across 3 nodes, eval `1+1` p50 0.39–0.44 → 0.34–0.38 ms, a hello's
    /// req/s and 16/64-client writes within the noise. Every hop between Raft's tasks on one
    /// thread is a queue push; across threads it is a wake-up, and the node shares the cores
    /// with its Python workers.
    pub fn io_threads(&self) -> anyhow::Result<usize> {
        match self.io_threads {
            Some(0) => {
                anyhow::bail!("--io-threads must be at least 1 (leave it out for half the cores)")
            }
            Some(n) => Ok(n.min(256)),
            None => Ok(std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .max(1)),
        }
    }

    fn config(&self) -> anyhow::Result<NodeConfig> {
        let file = match &self.config {
            Some(path) => NodeFile::load(path)?,
            None => NodeFile::default(),
        };
        let flags = NodeFile {
            id: self.id,
            listen: self.listen.clone(),
            http: self.http.clone(),
            py_threads: self.py_threads,
            py_workers: self.py_workers,
            py_worker_max_rss: self.py_worker_max_rss,
            keep_envs: self.keep_envs,
            data: self.data.clone(),
            join: self.join.clone(),
            token_file: self.token_file.clone(),
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_min_ms,
            election_max_ms: self.election_max_ms,
            snapshot_every: self.snapshot_every,
            keep_logs: self.keep_logs,
            tags: (!self.tags.is_empty()).then(|| self.tags.clone()),
            gpu: self.gpu,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_ca: self.tls_ca.clone(),
            peer_via: (!self.peer_via.is_empty()).then(|| self.peer_via.iter().cloned().collect()),
            max_connections: self.max_connections,
            http_max_connections: self.http_max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            http_max_connections_per_ip: self.http_max_connections_per_ip,
            hello_timeout_ms: self.hello_timeout_ms,
            http_header_timeout_ms: self.http_header_timeout_ms,
            http_body_timeout_ms: self.http_body_timeout_ms,
            http_max_body: self.http_max_body,
            http_max_head: self.http_max_head,
            log_format: self.log_format.clone(),
            learner: self.learner.then_some(true),
            leave: self.leave.then_some(true),
        };
        Ok(file.merge(flags).check()?)
    }
}

fn parse_peer_via(arg: &str) -> Result<(u64, String), String> {
    let (id, addr) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not ID=HOST:PORT (e.g. 2=127.0.0.1:9102)"))?;
    let id = id
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("{id:?} is not a node id (e.g. 2=127.0.0.1:9102)"))?;
    Ok((id, addr.trim().to_string()))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PUSH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = if format == LogFormat::Json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // The ring keeps info and above whatever PUSH_LOG says (openraft only from warn).
    let ring = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("openraft", LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(crate::logs::RingLayer.with_filter(ring))
        .init();
}

/// Runs one node with the configuration the arguments give, until SIGINT/SIGTERM.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    if let Some(format) = args.format {
        push_protocol::format::limit_to(format).context("--format (PUSH_FORMAT)")?;
    }
    init_logging(config.log_format);
    if let Some(format) = args.format {
        tracing::info!(
            format,
            "running as format {format}: writing and speaking formats up to {format} only"
        );
    }
    crate::assemble::run(config).await
}
