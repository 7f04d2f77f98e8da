//! Putting a node together from its checked config: token, listeners, TLS, the Python
//! runtime, Raft, then the tasks that serve, reload, place and audit — and joining or
//! initialising the cluster. The command line only turns arguments into the config.
//!
//! The top of the import order below the command line: this file may use every layer (edge,
//! ops, tasks, node, runtime). It sits beside `node/`, not inside it, so the node itself never
//! imports the edge (DESIGN.md invariant 8: the node is below the server).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::BasicNode;
use push_protocol::{Client, Op, Reply};

use crate::config::NodeConfig;
use crate::node::{Node, NodeParts};
use crate::ops::bridge::NodeCluster;
use crate::server::{self, auth};
use crate::workers::{Pool, PoolConfig};
use crate::{consensus, shutdown};

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

/// Starts every part of a node from `config` and runs it until SIGINT/SIGTERM.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
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
    // The versions' files, written once per node and shared by its workers; without the
    // folder each worker keeps its own copies, as it can.
    let files_dir = crate::workers::process::make_files_dir()
        .map_err(|e| {
            tracing::warn!(
                "cannot make a folder for the versions' files in {} ({e}): each python worker keeps its own copies; set TMPDIR to a writable directory",
                std::env::temp_dir().display()
            )
        })
        .ok();
    let workers = Pool::new(PoolConfig {
        workers: config.py_workers,
        threads: config.py_threads,
        max_rss: config.py_worker_max_rss,
        env: None,
        envs_dir: config.data.join("envs"),
        keep_envs: config.keep_envs,
        owner: None,
        code_cache: Some(config.data.join("python-cache")),
        files_dir: files_dir.clone(),
    });
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
        workers: workers.clone(),
        http: config.http.map(|h| h.to_string()),
        peer_via: config.peer_via.clone(),
    }));
    workers.start(Arc::new(NodeCluster(node.clone())));
    tracing::info!(
        workers = config.py_workers,
        threads = config.py_threads,
        "starting python workers"
    );
    tokio::spawn(crate::node::watch_leader(node.clone()));
    let (trigger, shutdown) = shutdown::channel();
    let server = tokio::spawn(server::serve(
        listener,
        node.clone(),
        shutdown.clone(),
        tls,
        limits.clone(),
    ));
    tokio::spawn(crate::ops::audit::flush(node.clone(), shutdown.clone()));
    tokio::spawn(crate::node::reload::follow_heads(
        node.clone(),
        workers,
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
            let learner = config.learner;
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = join(&node, &seed, learner) => {}
                }
            });
        }
        (None, true) => {}
    }

    shutdown::signal().await;
    if config.leave {
        leave(&node).await;
    }
    tracing::info!("shutting down");
    trigger.trigger();
    // Daemons get their stop deadline while Raft still runs, so their last writes land.
    let _ = tokio::time::timeout(Duration::from_secs(8), tasks).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), node.raft.shutdown()).await;
    let _ = server.await;
    if let Some(dir) = files_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// How long `--leave` waits for the cluster to commit this node's removal.
const LEAVE_LIMIT: Duration = Duration::from_secs(8);

/// `--leave`: asks the cluster (through this node, which forwards to the leader) to remove
/// this node and waits, bounded, for the removal to commit. A refusal or a timeout is
/// logged with what to do; the node shuts down either way.
async fn leave(node: &Node) {
    if !node.members().iter().any(|m| m.id == node.id) {
        tracing::info!("leaving: this node is not a member, nothing to do");
        return;
    }
    tracing::info!("leaving the cluster: asking to be removed");
    let removal = crate::ops::handle(node, Op::Remove { id: node.id });
    match tokio::time::timeout(LEAVE_LIMIT, removal).await {
        Ok(Ok(Reply::Joined { members })) => {
            tracing::info!(
                members = %crate::node::membership::describe(&members),
                "left the cluster"
            );
            // Proposed at once (the audit flusher stops with the node), through the leader.
            let record = Op::AuditRecord(vec![crate::ops::audit::leave(node)]);
            match tokio::time::timeout(LEAVE_LIMIT, crate::ops::handle(node, record)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("leaving: the audit record was not written: {e}"),
                Err(_) => tracing::warn!("leaving: the audit record was not written in time"),
            }
        }
        Ok(Ok(other)) => tracing::warn!("leaving: unexpected reply {other:?}"),
        Ok(Err(e)) => tracing::warn!(
            "could not leave the cluster: {e}; this node stays a member (down once it exits): remove it later with `push remove {}`",
            node.id
        ),
        Err(_) => tracing::warn!(
            "leaving: the removal did not commit within {}s; check `push status` and run `push remove {}` if it is still a member",
            LEAVE_LIMIT.as_secs(),
            node.id
        ),
    }
}

/// Asks the cluster at `seed` to add this node (as a voter, or a learner), retrying until it
/// answers.
async fn join(node: &Node, seed: &str, learner: bool) {
    let mut attempt = 0u32;
    loop {
        let me = node.members().into_iter().find(|m| m.id == node.id);
        if me.as_ref().is_some_and(|m| m.voter || learner) {
            tracing::info!(
                "already a {} member",
                if me.is_some_and(|m| m.voter) {
                    "voting"
                } else {
                    "learning"
                }
            );
            return;
        }
        attempt += 1;
        let (id, addr) = (node.id, node.addr.clone());
        let op = if learner {
            Op::JoinLearner { id, addr }
        } else {
            Op::Join { id, addr }
        };
        let result = async {
            let client = Client::connect_as(seed, &node.token, crate::NODE_CLIENT).await?;
            client.call(op).await
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
