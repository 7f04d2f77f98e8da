//! The chaos test's nemesis (kill -9 and restart, SIGSTOP pauses, partitions, deploys) and
//! the per-node view of the applied state compared after healing.

use super::*;

/// Faults the nemesis injected, by kind.
#[derive(Debug, Default)]
pub(super) struct Faults {
    pub(super) kills: usize,
    pub(super) pauses: usize,
    pub(super) partitions: usize,
}

/// Injects one fault every few seconds until `until`, healing each before the next.
pub(super) async fn nemesis(cluster: &mut Cluster, until: Instant, faults: &mut Faults) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("PUSH_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7),
    );
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    // Kinds take turns, so even a short run sees each; nodes and durations are random.
    for round in 0usize.. {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..1500))).await;
        if Instant::now() + Duration::from_secs(3) > until {
            return;
        }
        let id = ids[rng.gen_range(0..ids.len())];
        let hold = Duration::from_millis(rng.gen_range(1500..2500));
        match round % 3 {
            0 => {
                eprintln!("nemesis: kill -9 node {id}, restart after {hold:?}");
                cluster.kill(id);
                faults.kills += 1;
                tokio::time::sleep(hold).await;
                cluster.restart(id);
            }
            1 => {
                eprintln!("nemesis: SIGSTOP node {id} for {hold:?}");
                cluster.pause(id);
                faults.pauses += 1;
                tokio::time::sleep(hold).await;
                cluster.resume(id);
            }
            _ => {
                let mode = if faults.partitions.is_multiple_of(2) {
                    Mode::Drop
                } else {
                    Mode::Blackhole
                };
                eprintln!("nemesis: partition node {id} ({mode:?}) for {hold:?}");
                cluster.partition(id, mode);
                faults.partitions += 1;
                tokio::time::sleep(hold).await;
                cluster.heal();
            }
        }
    }
}

/// What a node holds of the state the clients changed, read stale from it alone. (Queue
/// numbers are a leader read, so they are checked once, against the history, instead.)
pub(super) async fn applied_view(cluster: &Cluster, id: u64) -> Option<String> {
    let client = Client::connect(&cluster.addr(id), &cluster.token)
        .await
        .ok()?;
    let call = |op| async {
        tokio::time::timeout(Duration::from_secs(2), client.call(op))
            .await
            .ok()?
            .ok()
    };
    let keys = call(Op::KvList {
        map: MAP.into(),
        prefix: String::new(),
        read: ReadMode::Stale,
    })
    .await?;
    let Reply::Keys(keys) = keys else {
        return None;
    };
    let mut view = String::new();
    for key in &keys {
        let v = call(Op::KvGet {
            map: MAP.into(),
            key: key.clone(),
            read: ReadMode::Stale,
        })
        .await?;
        view.push_str(&format!("{key}={v:?}\n"));
    }
    let Reply::Status(status) = call(Op::Status).await? else {
        return None;
    };
    view.push_str(&format!("heads {:?}\n", status.heads));
    Some(view)
}

pub(super) fn deploy(cluster: &Cluster, version: u32, to: u64) {
    let source = format!("VERSION = {version}\n");
    cluster.deploy_app("chaos-app", &source, to, &format!("v{version}"));
}
