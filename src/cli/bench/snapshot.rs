//! `push bench snapshot`: how long a big state takes to snapshot, install on a fresh joiner,
//! load after a restart and back up (`push backup`), and each node's peak RSS meanwhile. It makes the state itself
//! (N kv keys written straight into a backup file), seeds node 1 with `push restore`'s code,
//! and runs local `push node` processes in a temp dir of its own, killed when it ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use push_protocol::{Client, NodeStatus, Op, Reply, Value};
use sha2::{Digest, Sha256};

use crate::cli::backup::seed_data_dir;
use crate::consensus::backup::{self, BackupHeader, BackupState, BackupWriter};
use crate::model::State;

#[derive(clap::Args, Debug)]
pub struct SnapshotBench {
    /// Keys in the state
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Bytes of each value
    #[arg(long, default_value_t = 280)]
    pub value_bytes: usize,
    /// How long to wait for each step
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// A node process, killed on drop.
struct NodeProc {
    child: Child,
    addr: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

fn spawn(dir: &Path, id: u64, addr: &str, join: Option<&str>) -> anyhow::Result<NodeProc> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("n{id}.log")))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["node", "--id", &id.to_string(), "--listen", addr])
        .arg("--data")
        .arg(dir.join(format!("n{id}")))
        .arg("--token-file")
        .arg(dir.join("token"))
        .args(["--snapshot-every", "50"]);
    if let Some(seed) = join {
        command.args(["--join", seed]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting a node")?;
    Ok(NodeProc {
        child,
        addr: addr.to_string(),
    })
}

/// The peak resident set of process `pid` so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn status(addr: &str, token: &str) -> Option<NodeStatus> {
    let client = Client::connect(addr, token).await.ok()?;
    match client.call(Op::Status).await.ok()? {
        Reply::Status(s) => Some(*s),
        _ => None,
    }
}

/// Waits until node at `addr` reports a status for which `done` holds.
async fn wait_until(
    addr: &str,
    token: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&NodeStatus) -> bool,
) -> anyhow::Result<NodeStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = status(addr, token).await {
            if done(&s) {
                return Ok(s);
            }
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Writes the backup file of a state of `keys` keys; returns its header.
fn write_state(path: &Path, keys: u64, value_bytes: usize) -> anyhow::Result<BackupHeader> {
    let mut state = State::default();
    let value = "v".repeat(value_bytes);
    for i in 0..keys {
        state
            .kv
            .set("bench", &format!("key-{i:09}"), Value::Str(value.clone()));
    }
    let bytes = backup::encode(&BackupState {
        index: 1,
        term: 1,
        state,
    })?;
    let header = BackupHeader {
        format: push_protocol::FORMAT_VERSION,
        index: 1,
        term: 1,
        bytes: bytes.len() as u64,
    };
    let out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = BackupWriter::new(out, header)?;
    for chunk in bytes.chunks(1 << 20) {
        w.chunk(chunk)?;
    }
    w.finish(&backup::hex(&Sha256::digest(&bytes)))?;
    Ok(header)
}

pub(super) async fn snapshot(args: &SnapshotBench, json: bool) -> anyhow::Result<()> {
    let within = Duration::from_secs(args.timeout_secs);
    let dir = std::env::temp_dir().join(format!("push-bench-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _remove = RemoveDir(dir.clone());
    let token = crate::server::auth::generate();
    std::fs::write(dir.join("token"), &token)?;
    let mut rows: Vec<(String, f64, u64)> = Vec::new();

    let started = Instant::now();
    let file = dir.join("state.backup");
    let (path, keys, value_bytes) = (file.clone(), args.keys, args.value_bytes);
    let header =
        tokio::task::spawn_blocking(move || write_state(&path, keys, value_bytes)).await??;
    let state = header.bytes;
    rows.push((
        "make state + backup file".into(),
        started.elapsed().as_secs_f64(),
        0,
    ));

    let a1 = free_addr()?;
    let started = Instant::now();
    let (path, n1_dir, addr, secret) = (file.clone(), dir.join("n1"), a1.clone(), token.clone());
    tokio::task::spawn_blocking(move || seed_data_dir(&path, &n1_dir, 1, &addr, &secret)).await??;
    rows.push((
        "restore into node 1".into(),
        started.elapsed().as_secs_f64(),
        0,
    ));
    std::fs::remove_file(&file)?;

    // Node 1 loads the restored snapshot.
    let started = Instant::now();
    let n1 = spawn(&dir, 1, &a1, None)?;
    let s = wait_until(&n1.addr, &token, within, "node 1 starts", |s| {
        s.role == "leader"
    })
    .await?;
    let pid1 = s.pid;
    rows.push((
        "node 1 start (load)".into(),
        started.elapsed().as_secs_f64(),
        peak_rss(pid1),
    ));

    // A few writes past --snapshot-every make node 1 build a snapshot of the whole state.
    let started = Instant::now();
    let client = Client::connect(&n1.addr, &token).await?;
    for i in 0..60 {
        client
            .call(Op::KvSet {
                map: "after".into(),
                key: format!("k{i}"),
                value: Value::Int(i),
            })
            .await?;
    }
    let s = wait_until(&n1.addr, &token, within, "node 1 builds a snapshot", |s| {
        s.snapshot_index.unwrap_or(0) > header.index
    })
    .await?;
    let last = s.applied_index.unwrap_or(0);
    rows.push((
        "node 1 build snapshot".into(),
        started.elapsed().as_secs_f64(),
        peak_rss(pid1),
    ));

    // A fresh node joins: the leader sends the snapshot, the joiner installs it.
    let a2 = free_addr()?;
    let started = Instant::now();
    let n2 = spawn(&dir, 2, &a2, Some(&a1))?;
    let s2 = wait_until(&a2, &token, within, "node 2 installs the snapshot", |s| {
        s.applied_index.unwrap_or(0) >= last
    })
    .await?;
    let pid2 = s2.pid;
    rows.push((
        "node 2 join + install".into(),
        started.elapsed().as_secs_f64(),
        peak_rss(pid2),
    ));
    rows.push(("node 1 while sending".into(), 0.0, peak_rss(pid1)));

    // Node 2 restarts from its own snapshot.
    drop(n2);
    let started = Instant::now();
    let n2 = spawn(&dir, 2, &a2, Some(&a1))?;
    let s2 = wait_until(&n2.addr, &token, within, "node 2 restarts", |s| {
        s.applied_index.unwrap_or(0) >= last
    })
    .await?;
    rows.push((
        "node 2 restart (load)".into(),
        started.elapsed().as_secs_f64(),
        peak_rss(s2.pid),
    ));

    // A backup of the whole state through node 1 (the leader encodes and streams it): node
    // 1's RSS sampled meanwhile, against what it held just before.
    let before = crate::procstat::of_pid(pid1).rss_bytes;
    let started = Instant::now();
    let out = dir.join("again.backup");
    let mut backup = Command::new(std::env::current_exe()?)
        .args([
            "backup",
            &out.display().to_string(),
            "--to",
            &a1,
            "--token-file",
        ])
        .arg(dir.join("token"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting `push backup`")?;
    let mut sampled = before;
    let status = loop {
        sampled = sampled.max(crate::procstat::of_pid(pid1).rss_bytes);
        if let Some(status) = backup.try_wait()? {
            break status;
        }
        if started.elapsed() > within {
            let _ = backup.kill();
            bail!("`push backup` took over {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if !status.success() {
        bail!("`push backup` failed ({status})");
    }
    rows.push((
        format!(
            "node 1 backup (+{:.1} MB)",
            mb(sampled.saturating_sub(before))
        ),
        started.elapsed().as_secs_f64(),
        sampled,
    ));
    let _ = std::fs::remove_file(&out);
    drop(n2);
    drop(n1);

    if json {
        let phases: Vec<_> = rows
            .iter()
            .map(|(name, secs, rss)| serde_json::json!({"phase": name, "seconds": secs, "peak_rss_bytes": rss}))
            .collect();
        let out = serde_json::json!({
            "bench": "snapshot",
            "params": {"keys": args.keys, "value_bytes": args.value_bytes},
            "state_bytes": state,
            "results": phases,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "snapshot: {} keys of {} bytes, {:.1} MB of state encoded",
        args.keys,
        args.value_bytes,
        mb(state)
    );
    for (name, secs, rss) in rows {
        if rss == 0 {
            println!("snapshot {name:<28} {secs:>8.2} s");
        } else {
            println!(
                "snapshot {name:<28} {secs:>8.2} s  peak RSS {:>8.1} MB ({:.1}x the state)",
                mb(rss),
                rss as f64 / state.max(1) as f64
            );
        }
    }
    Ok(())
}

/// Removes `dir` when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
