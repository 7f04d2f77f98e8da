//! Quorum lost: with a majority of voters gone, a write says so — how many voters answer,
//! how many are missing — instead of waiting until the client gives up; `push bench
//! failover` refuses to kill a leader whose loss would leave no majority.

use std::process::Output;
use std::time::Duration;

use crate::support::cluster::{fails, ok};
use crate::support::Cluster;

/// Runs the CLI off the async workers, failing the test if it has not ended within `within`
/// (the feature is that it ends; the bound only keeps a regression from hanging the suite).
async fn cli_within(cluster: &Cluster, args: &[&str], within: Duration) -> Output {
    let mut command = std::process::Command::new(crate::support::cluster::push_bin());
    command
        .args(args)
        .arg("--token-file")
        .arg(&cluster.token_file)
        .stdin(std::process::Stdio::null());
    let run = tokio::task::spawn_blocking(move || command.output().expect("run push"));
    tokio::time::timeout(within, run)
        .await
        .unwrap_or_else(|_| panic!("push {args:?} did not end within {within:?}"))
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_say_quorum_is_lost_and_how_many_voters_are_missing() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let la = cluster.addr(leader);
    ok(&cluster.cli(&["kv", "set", "m", "k", "1", "--to", &la]));

    // Failover would leave one of three voters: refused before anything is killed.
    cluster.kill(followers[0]);
    let err = fails(
        &cli_within(
            &cluster,
            &["bench", "failover", "--yes", "--to", &la],
            Duration::from_secs(60),
        )
        .await,
    );
    assert!(
        err.contains("would leave no majority")
            && err.contains("quorum lost: 1 of 3 voters answer"),
        "{err}"
    );
    assert!(
        cluster.status(leader).await.is_some(),
        "the leader was not killed"
    );

    // The leader alone: it keeps leading but cannot commit; the write says why.
    cluster.kill(followers[1]);
    let err = fails(
        &cli_within(
            &cluster,
            &["kv", "set", "m", "k", "2", "--to", &la],
            Duration::from_secs(60),
        )
        .await,
    );
    assert!(
        err.contains(&format!("quorum lost: 1 of 3 voters answer (nodes {leader}), 2 are needed: 1 more voter is missing")),
        "{err}"
    );

    // A follower with no leader (the old leader gone too): no leader can be elected.
    cluster.kill(leader);
    cluster.restart(followers[0]);
    let fa = cluster.addr(followers[0]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.status(followers[0]).await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "node {} did not come back",
            followers[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = fails(
        &cli_within(
            &cluster,
            &["kv", "set", "m", "k", "3", "--to", &fa],
            Duration::from_secs(60),
        )
        .await,
    );
    assert!(
        err.contains("no leader can be elected: quorum lost: 1 of 3 voters answer")
            && err.contains("bring back 1 of nodes"),
        "{err}"
    );

    // Bringing one back heals it; the first write is still there.
    cluster.restart(followers[1]);
    cluster.wait_leader(Duration::from_secs(30)).await;
    let out = ok(&cli_within(
        &cluster,
        &["kv", "get", "m", "k", "--to", &fa],
        Duration::from_secs(60),
    )
    .await);
    assert!(out.trim() == "1" || out.trim() == "2", "{out}");
}
