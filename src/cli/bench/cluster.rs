//! `push bench deploy` and `push bench failover`: whole-cluster timings (a deploy served by
//! every node; a killed leader until the next acknowledged write).

use std::time::{Duration, Instant};

use anyhow::bail;
use push_protocol::{Client, Op, Reply, Value};

use super::super::status::status_of;
use super::super::target::Target;
use super::{leader_addr, report, summarise};

#[derive(clap::Args, Debug)]
pub struct DeployBench {
    /// Deploys to time
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// Modules in the generated app
    #[arg(long, default_value_t = 50)]
    pub modules: u32,
}

#[derive(clap::Args, Debug)]
pub struct FailoverBench {
    /// Really kill the leader process (required: this is destructive)
    #[arg(long)]
    pub yes: bool,
}

pub(super) async fn statuses(target: &Target) -> anyhow::Result<Vec<push_protocol::NodeStatus>> {
    let token = target.token()?;
    let first = match target.connect(None).await?.call(Op::Status).await? {
        Reply::Status(s) => *s,
        other => bail!("unexpected reply {other:?}"),
    };
    let mut out = Vec::new();
    for m in &first.members {
        if let Ok(s) = status_of(&m.addr, &token).await {
            out.push(s);
        }
    }
    Ok(out)
}

pub(super) async fn deploy(target: &Target, args: &DeployBench, json: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("push-bench-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let addr = leader_addr(target).await?;
    let token = target.token()?;
    let nodes = statuses(target).await?;
    let mut lat = Vec::new();
    let started = Instant::now();
    eprintln!(
        "bench deploy: {} rounds of a {}-module app, timed until all {} nodes serve it…",
        args.rounds,
        args.modules,
        nodes.len()
    );
    let stamp = crate::clock::now_ms();
    for round in 0..args.rounds {
        let imports: String = (0..args.modules)
            .map(|i| format!("import mod{i:02}\n"))
            .collect();
        std::fs::write(
            dir.join("app.py"),
            format!("{imports}ROUND = {round}  # {stamp}\n"),
        )?;
        for i in 0..args.modules {
            std::fs::write(
                dir.join(format!("mod{i:02}.py")),
                format!("def f{i}(x):\n    return x + {i} + {round}\n"),
            )?;
        }
        let round_started = Instant::now();
        let deploy_args = super::super::code::DeployArgs {
            dir: dir.clone(),
            message: format!("bench round {round}"),
            no_activate: false,
            wheels: None,
            app: "bench".into(),
            target: Target {
                addr: Some(addr.clone()),
                token: Some(token.clone()),
                token_file: None,
            },
        };
        let line = super::super::code::deploy_dir(&deploy_args).await?;
        let version: u64 = line
            .split("bench@v")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("unexpected deploy answer: {line}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        'wait: loop {
            let mut all = true;
            for n in &nodes {
                let serving = status_of(&n.addr, &token).await.ok().and_then(|s| {
                    s.serving
                        .iter()
                        .find(|(a, _)| a == "bench")
                        .map(|(_, v)| *v)
                });
                if serving != Some(version) {
                    all = false;
                    break;
                }
            }
            if all {
                break 'wait;
            }
            if Instant::now() > deadline {
                bail!("v{version} was not served by every node within 30 s; see `push status`");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lat.push(round_started.elapsed().as_micros() as u64);
        eprint!("\r  round {}/{}", round + 1, args.rounds);
    }
    eprintln!();
    let _ = std::fs::remove_dir_all(&dir);
    let s = summarise(lat, 0, started.elapsed().as_secs_f64());
    let params = serde_json::json!({
        "rounds": args.rounds, "modules": args.modules, "nodes": nodes.len(),
    });
    let name = format!(
        "{} modules served by all {} nodes",
        args.modules,
        nodes.len()
    );
    report(json, "deploy", params, &[(name, s)])
}

/// The status of every member that answers, once all of those name the same leader in the
/// same term (right after a restart, one node may still call itself leader of an older term;
/// killing it would time nothing). A member that does not answer is left out: the caller
/// decides whether the rest still make a majority. Waits at most 10 s.
async fn settled_statuses(target: &Target) -> anyhow::Result<Vec<push_protocol::NodeStatus>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let nodes = statuses(target).await?;
        let leaders: Vec<_> = nodes.iter().filter(|s| s.role == "leader").collect();
        if let [leader] = leaders[..] {
            if nodes
                .iter()
                .all(|s| s.leader == Some(leader.id) && s.term == leader.term)
            {
                return Ok(nodes);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the members do not agree on one leader within 10 s; check `push status` and retry"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn failover(
    target: &Target,
    args: &FailoverBench,
    json: bool,
) -> anyhow::Result<()> {
    if !args.yes {
        bail!("`push bench failover` kills the leader's process; run it on a local test cluster with --yes");
    }
    let token = target.token()?;
    let nodes = settled_statuses(target).await?;
    let leader = nodes
        .iter()
        .find(|s| s.role == "leader")
        .ok_or_else(|| anyhow::anyhow!("no leader right now; retry"))?;
    // Killing the leader must leave a majority of the voters, or nothing is ever written.
    let voters: Vec<(u64, bool)> = leader
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| {
            (
                m.id,
                m.id != leader.id && nodes.iter().any(|n| n.id == m.id),
            )
        })
        .collect();
    if let Some(lost) = crate::node::quorum::quorum_lost_message(&voters) {
        bail!(
            "killing leader node {} would leave no majority, so no new leader could be elected: {lost}",
            leader.id
        );
    }
    let survivor = nodes
        .iter()
        .find(|s| s.id != leader.id)
        .ok_or_else(|| anyhow::anyhow!("failover needs at least two nodes"))?;
    let client = Client::connect(&survivor.addr, &token).await?;
    client
        .call(Op::KvSet {
            map: "bench".into(),
            key: "failover".into(),
            value: Value::Int(0),
        })
        .await?;
    eprintln!(
        "killing leader node {} (pid {}), writing through node {}…",
        leader.id, leader.pid, survivor.id
    );
    let killed = Instant::now();
    // SAFETY: kill(2) on a pid the cluster reported for its leader; the user asked with --yes.
    if unsafe { libc::kill(leader.pid as i32, libc::SIGKILL) } != 0 {
        bail!(
            "could not kill pid {}: {}",
            leader.pid,
            std::io::Error::last_os_error()
        );
    }
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let op = Op::KvSet {
            map: "bench".into(),
            key: "failover".into(),
            value: Value::Int(attempts as i64),
        };
        match tokio::time::timeout(Duration::from_secs(2), client.call(op)).await {
            Ok(Ok(Reply::Written { .. })) => break,
            Ok(Err(push_protocol::ClientError::Server(e))) if e.message.contains("quorum lost") => {
                bail!("no write can be acknowledged after the kill: {}", e.message)
            }
            _ if killed.elapsed() > Duration::from_secs(30) => {
                bail!("no write was acknowledged within 30 s of the kill")
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let gap = killed.elapsed();
    let s = summarise(vec![gap.as_micros() as u64], 0, gap.as_secs_f64());
    let params = serde_json::json!({
        "killed": leader.id, "written_through": survivor.id, "attempts": attempts,
    });
    report(
        json,
        "failover",
        params,
        &[("kill -9 leader to next ack".into(), s)],
    )?;
    eprintln!(
        "killed leader {}; restart it to heal the cluster (`push up` restarts its nodes)",
        leader.id
    );
    Ok(())
}
