//! `push node`: run one node until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::BasicNode;
use push_protocol::{Client, Op, Reply};

use crate::config::{NodeConfig, NodeFile};
use crate::node::{Node, NodeParts};
use crate::runtime::Runtime;
use crate::server::{self, auth};
use crate::{consensus, shutdown};

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
    /// Python threads that run handlers [default: 4]
    #[arg(long)]
    pub py_threads: Option<usize>,
    /// Data directory (raft log, snapshots, token)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Join the cluster that the node at HOST:PORT belongs to
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// File holding the cluster token (a new cluster creates DATA/token)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Raft heartbeat interval in ms
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in ms
    #[arg(long)]
    pub election_min_ms: Option<u64>,
    /// Maximum election timeout in ms
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
    /// Log format: "text" or "json"
    #[arg(long, default_value = "text")]
    pub log_format: String,
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
}

impl NodeArgs {
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

fn init_logging(format: &str) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PUSH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = if format == "json" {
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

/// The token this node uses: --token-file, DATA/token, or (new cluster) a fresh one.
fn resolve_token(config: &NodeConfig) -> anyhow::Result<String> {
    let stored = config.data.join("token");
    let token = if let Some(file) = &config.token_file {
        auth::read_token(file).with_context(|| format!("reading token file {}", file.display()))?
    } else if stored.exists() {
        auth::read_token(&stored).with_context(|| format!("reading {}", stored.display()))?
    } else if config.join.is_some() {
        anyhow::bail!("joining a cluster needs its token: pass --token-file FILE (the first node keeps it in its DATA/token)");
    } else {
        let token = auth::generate();
        tracing::info!("created a new cluster token in {}", stored.display());
        token
    };
    if token.is_empty() {
        anyhow::bail!("the cluster token is empty");
    }
    if !stored.exists() {
        auth::write_token(&stored, &token)
            .with_context(|| format!("writing {}", stored.display()))?;
    }
    Ok(token)
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let config = args.config()?;
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating data dir {}", config.data.display()))?;
    std::fs::write(config.data.join("id"), format!("{}\n", config.id))
        .with_context(|| format!("writing {}", config.data.join("id").display()))?;
    let token = resolve_token(&config)?;
    let limits = server::limits::start(&config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another node using it? pick another --listen",
                config.listen
            )
        })?;
    let addr = config.listen.to_string();
    let tls = match &config.tls {
        Some(files) => {
            let server = push_protocol::tls::server_config(&files.cert, &files.key)
                .context("setting up TLS from --tls-cert/--tls-key")?;
            // The CA may come from node.ron rather than the global --tls-ca that `cli::run`
            // installs: install it here, for this node's connections to its peers.
            let client = push_protocol::tls::client_config(&files.ca)
                .context("setting up TLS from --tls-ca")?;
            push_protocol::tls::use_for_clients(client);
            tracing::info!("serving TLS for clients and peers");
            Some(server)
        }
        None => None,
    };
    if tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!("listening on {addr}, beyond loopback, without TLS: traffic is authenticated by token but not encrypted; pass --tls-cert/--tls-key/--tls-ca (`push tls-init` makes them)");
    }
    let http_listener = match config.http {
        Some(http) => Some(tokio::net::TcpListener::bind(http).await.with_context(|| {
            format!("cannot serve HTTP on {http}: is it in use? pick another --http")
        })?),
        None => None,
    };
    let threads = config.py_threads;
    let runtime = tokio::task::spawn_blocking(move || Runtime::start(threads)).await??;
    let (version, prefix) = tokio::task::spawn_blocking(Runtime::python_info).await?;
    tracing::info!(python = %version.lines().next().unwrap_or(""), %prefix, "embedded python ready");
    let (raft, state) = consensus::start(
        config.id,
        &config.data,
        token.clone(),
        &config.raft,
        config.peer_via.clone(),
    )
    .await?;
    let node = Arc::new(Node::new(NodeParts {
        id: config.id,
        addr: addr.clone(),
        raft,
        state,
        token,
        runtime: runtime.clone(),
        http: config.http.map(|h| h.to_string()),
        peer_via: config.peer_via.clone(),
    }));
    crate::runtime::native::install(node.clone(), tokio::runtime::Handle::current());
    tokio::spawn(crate::metrics::watch_leader(node.clone()));
    let (trigger, shutdown) = shutdown::channel();
    let server = tokio::spawn(server::serve(
        listener,
        node.clone(),
        shutdown.clone(),
        tls,
        limits.clone(),
    ));
    tokio::spawn(server::audit::flush(node.clone(), shutdown.clone()));
    tokio::spawn(crate::runtime::reload::follow_heads(
        node.clone(),
        runtime,
        shutdown.clone(),
    ));
    let (cores, memory_mb, gpu, tags) = crate::tasks::capabilities(&config.tags, config.gpu);
    let info = push_protocol::NodeInfo {
        id: config.id,
        addr: addr.clone(),
        http: config.http.map(|h| h.to_string()),
        cores,
        memory_mb,
        gpu,
        tags,
        pid: std::process::id(),
    };
    let tasks = tokio::spawn(crate::tasks::run(node.clone(), info, shutdown.clone()));
    if let (Some(listener), Some(http)) = (http_listener, config.http) {
        tracing::info!(%http, "serving app HTTP");
        tokio::spawn(server::http::serve(
            listener,
            node.clone(),
            shutdown.clone(),
            limits,
        ));
    }
    tracing::info!(id = config.id, %addr, data = %config.data.display(), "node listening");

    let initialized = node
        .raft
        .is_initialized()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match (&config.join, initialized) {
        (None, false) => {
            let members = std::collections::BTreeMap::from([(config.id, BasicNode::new(&addr))]);
            node.raft
                .initialize(members)
                .await
                .map_err(|e| anyhow::anyhow!("initializing a new cluster: {e}"))?;
            tracing::info!(
                "initialized a new single-node cluster; add nodes with `push node --join {addr}`"
            );
        }
        (Some(seed), _) => {
            let seed = seed.clone();
            let node = node.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = join(&node, &seed) => {}
                }
            });
        }
        (None, true) => {}
    }

    shutdown::signal().await;
    tracing::info!("shutting down");
    trigger.trigger();
    // Daemons get their stop deadline while Raft still runs, so their last writes land.
    let _ = tokio::time::timeout(Duration::from_secs(8), tasks).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), node.raft.shutdown()).await;
    let _ = server.await;
    Ok(())
}

/// Asks the cluster at `seed` to add this node, retrying until it answers.
async fn join(node: &Node, seed: &str) {
    let mut attempt = 0u32;
    loop {
        if node.members().iter().any(|m| m.id == node.id && m.voter) {
            tracing::info!("already a voting member");
            return;
        }
        attempt += 1;
        let result = async {
            let client = Client::connect_as(seed, &node.token, crate::NODE_CLIENT).await?;
            client
                .call(Op::Join {
                    id: node.id,
                    addr: node.addr.clone(),
                })
                .await
        }
        .await;
        match result {
            Ok(Reply::Joined { members }) => {
                tracing::info!(members = members.len(), "joined the cluster through {seed}");
                return;
            }
            Ok(other) => tracing::warn!("unexpected join reply {other:?}"),
            Err(e) if attempt % 10 == 1 => {
                tracing::warn!("joining through {seed} (attempt {attempt}): {e}; retrying")
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
