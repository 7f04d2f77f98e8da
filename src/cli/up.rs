//! `push up`: a local cluster of child `push node` processes on 127.0.0.1, data under `.push/`.
//!
//! The first run picks ports (7001.. when free), creates a token and records both in
//! `.push/cluster.ron` so later runs reuse the same addresses — Raft membership stores them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use push_protocol::{Client, Op, Reply};
use tokio::process::{Child, Command};

use super::target::{ClusterFile, PUSH_DIR};
use crate::server::auth;

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Number of nodes
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Directory for data, logs and the token
    #[arg(long, default_value = PUSH_DIR)]
    pub dir: PathBuf,
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `n` ports from `base` up when all are free, else `n` free ones the system picks, saying
/// so with the ports (`what`: "node" or "app HTTP").
fn pick_ports(base: u16, n: u64, what: &str) -> anyhow::Result<Vec<u16>> {
    let preferred: Vec<u16> = (0..n).map(|i| base + i as u16).collect();
    if preferred.iter().all(|p| port_free(*p)) {
        return Ok(preferred);
    }
    let busy: Vec<String> = preferred
        .iter()
        .filter(|p| !port_free(**p))
        .map(u16::to_string)
        .collect();
    let mut listeners = Vec::new();
    for _ in 0..n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        listeners.push(listener);
    }
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<u16>, _>>()?;
    eprintln!(
        "port {} busy, so the {what} ports are {} instead (recorded in the cluster file)",
        busy.join(", "),
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ports)
}

/// Whether a Push node already answers with our token at `addr`: the cluster recorded in the
/// directory is running (another `push up`, or nodes started by hand).
async fn running_node(addr: &str, token: &str) -> bool {
    let probe = async {
        let client = Client::connect(addr, token).await.ok()?;
        client.call(Op::Status).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(Reply::Status(_)))
    )
}

fn spawn_node(
    exe: &Path,
    dir: &Path,
    (id, addr, http): (u64, &str, &str),
    seed: Option<&str>,
) -> anyhow::Result<Child> {
    let data = dir.join(format!("node{id}"));
    std::fs::create_dir_all(&data)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("node.log"))
        .with_context(|| format!("opening {}", data.join("node.log").display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--id")
        .arg(id.to_string())
        .arg("--listen")
        .arg(addr)
        .arg("--http")
        .arg(http)
        .arg("--data")
        .arg(&data)
        .arg("--token-file")
        .arg(dir.join("token"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Their own process group: Ctrl-C in the REPL interrupts an evaluation, not the nodes.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(seed) = seed {
        cmd.arg("--join").arg(seed);
    }
    cmd.spawn().with_context(|| format!("starting node {id}"))
}

/// Waits until `first` reports `n` voters and a leader, printing progress.
async fn wait_ready(first: &str, token: &str, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = usize::MAX;
    loop {
        let voters = async {
            let client = Client::connect(first, token).await.ok()?;
            match client.call(Op::Status).await.ok()? {
                Reply::Status(s) if s.leader.is_some() => {
                    Some(s.members.iter().filter(|m| m.voter).count())
                }
                _ => Some(0),
            }
        }
        .await
        .unwrap_or(0);
        if voters != shown {
            // Never more than this run started: voters beyond it are nodes added later.
            eprintln!("  {}/{n} nodes in the cluster", (voters as u64).min(n));
            shown = voters;
        }
        if voters as u64 >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the cluster did not form within 30 s; see the node logs under .push/node*/node.log");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let token_path = dir.join("token");
    if !token_path.exists() {
        auth::write_token(&token_path, &auth::generate())?;
    }
    let token = auth::read_token(&token_path)?;
    let cluster_path = dir.join("cluster.ron");
    let resumed = cluster_path.exists();
    let mut cluster = if resumed {
        ClusterFile::load(&cluster_path)?
    } else {
        let ports = pick_ports(7001, args.nodes, "node")?;
        ClusterFile {
            nodes: ports
                .iter()
                .enumerate()
                .map(|(i, p)| (i as u64 + 1, format!("127.0.0.1:{p}")))
                .collect(),
            http: Vec::new(),
        }
    };
    if cluster.http.len() != cluster.nodes.len() {
        cluster.http = pick_ports(8001, cluster.nodes.len() as u64, "app HTTP")?
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
    }
    std::fs::write(
        &cluster_path,
        ron::ser::to_string_pretty(&cluster, Default::default())?,
    )?;
    let exe = std::env::current_exe().context("locating the push binary")?;
    let first = cluster.nodes[0].1.clone();
    if running_node(&first, &token).await {
        return already_running(&first, &token, dir).await;
    }
    if resumed {
        eprintln!(
            "restarting the cluster recorded in {}",
            cluster_path.display()
        );
    }
    eprintln!(
        "starting {} nodes (logs in {}/node*/node.log)",
        cluster.nodes.len(),
        dir.display()
    );
    let mut children = Vec::new();
    for (i, ((id, addr), http)) in cluster.nodes.iter().zip(&cluster.http).enumerate() {
        let seed = (i > 0).then_some(first.as_str());
        children.push((*id, spawn_node(&exe, dir, (*id, addr, http), seed)?));
        if i == 0 {
            // Let the first node initialize before others ask to join it.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    wait_ready(&first, &token, cluster.nodes.len() as u64).await?;
    let example = deploy_example(&first, &token).await;
    println!("Push cluster is up:");
    for ((id, addr), http) in cluster.nodes.iter().zip(&cluster.http) {
        println!("  node {id}  {addr}   app HTTP on http://{http}/");
    }
    println!();
    println!(
        "From this directory (the token is in {}):",
        token_path.display()
    );
    let http = cluster.http.first().cloned().unwrap_or_default();
    println!("  push status                                  # every node's role, term, log, HEAD");
    if example {
        println!("  curl http://{http}/                  # the example app, served by every node");
        println!(
            "  push deploy examples/hello-web-v2 -m v2      # a new version, live everywhere at once"
        );
        println!("  push rollback                                # and back");
    } else {
        println!("  push deploy ./myapp -m v1                    # every .py under ./myapp, live everywhere at once");
        println!(
            "  curl http://{http}/                  # its @push.route handlers, on every node"
        );
    }
    println!("  push kv set greetings en hello && push kv get greetings en");
    println!(
        "From elsewhere: push status {first} --token-file {}",
        token_path.display()
    );
    let watch = watch_exits(&mut children, dir);
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        println!("Opening a REPL on node 1 — Ctrl-D leaves it and stops the cluster.");
        let repl = tokio::task::spawn_blocking({
            let (addr, token) = (first.clone(), token.clone());
            move || super::repl::run_repl(addr, token)
        });
        tokio::select! {
            _ = repl => {}
            _ = watch => {}
        }
    } else {
        println!("Press Ctrl-C to stop the cluster.");
        tokio::select! {
            _ = crate::shutdown::signal() => {}
            _ = watch => {}
        }
    }
    stop_all(children).await;
    eprintln!(
        "cluster stopped; data kept in {} (run `push up` again to resume)",
        dir.display()
    );
    Ok(())
}

/// A second `push up` in a directory whose cluster runs: say so, and attach a REPL to it in a
/// terminal (leaving it does not stop that cluster) instead of starting nodes that cannot bind.
async fn already_running(first: &str, token: &str, dir: &Path) -> anyhow::Result<()> {
    let how = format!(
        "the cluster recorded in {} is already running (node 1 answers at {first})",
        dir.display()
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("{how}; attach with `push repl`, check it with `push status`, or stop the other `push up` first");
    }
    eprintln!("{how}; attaching a REPL to it (Ctrl-D leaves it running; stop it from the `push up` that started it)");
    let (addr, token) = (first.to_string(), token.to_string());
    let code = tokio::task::spawn_blocking(move || super::repl::run_repl(addr, token)).await?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Deploys `examples/hello-web` when run from a checkout and nothing is deployed yet; returns
/// whether the example app is what the cluster serves.
async fn deploy_example(addr: &str, token: &str) -> bool {
    let example = Path::new("examples/hello-web");
    if !example.is_dir() {
        return false;
    }
    let empty = async {
        let client = Client::connect(addr, token).await.ok()?;
        match client
            .call(Op::Versions {
                app: super::code::DEFAULT_APP.into(),
            })
            .await
            .ok()?
        {
            Reply::Versions { versions, .. } => Some(versions.is_empty()),
            _ => None,
        }
    }
    .await;
    if empty != Some(true) {
        // Deployed before (from this checkout, by an earlier run or by hand).
        return empty.is_some();
    }
    let args = super::code::DeployArgs {
        dir: example.to_path_buf(),
        message: "example: hello-web v1".into(),
        no_activate: false,
        wheels: None,
        app: super::code::DEFAULT_APP.into(),
        target: super::target::Target {
            addr: Some(addr.to_string()),
            token: Some(token.to_string()),
            token_file: None,
        },
    };
    eprintln!("deploying examples/hello-web");
    match super::code::deploy_dir(&args).await {
        Ok(line) => {
            eprintln!("{line}");
            true
        }
        Err(e) => {
            eprintln!("could not deploy the example: {e:#}");
            false
        }
    }
}

/// Reports each node that exits (a crash, or a kill while you try failover) and returns once
/// every node is gone; the others keep running meanwhile.
async fn watch_exits(children: &mut [(u64, Child)], dir: &Path) {
    let mut gone = std::collections::BTreeSet::new();
    while gone.len() < children.len() {
        for (id, child) in children.iter_mut() {
            if gone.contains(id) {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                gone.insert(*id);
                eprintln!(
                    "\nnode {id} exited ({status}); the others keep running (see {}/node{id}/node.log; restarting `push up` brings it back)",
                    dir.display()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_all(children: Vec<(u64, Child)>) {
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            // SAFETY: sending SIGTERM to a child we spawned and still own.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    for (id, mut child) in children {
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("node {id} did not stop in 5 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
