//! Membership: `push remove` (dead or alive nodes, the leader, refusals that would lose
//! quorum or the last voter), replacing a dead node with a fresh one, `push node --leave`,
//! and learners (`--learner`, stale and linearizable reads, `push promote`).

use std::time::{Duration, Instant};

use push_protocol::{ReadMode, Value};

use crate::support::cluster::{fails, get, ok, set};
use crate::support::Cluster;

/// The member ids node `id` reports as voters and as learners; None while it does not answer.
async fn members_of(cluster: &Cluster, id: u64) -> Option<(Vec<u64>, Vec<u64>)> {
    let s = cluster.status(id).await?;
    let voters = s.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let learners = s
        .members
        .iter()
        .filter(|m| !m.voter)
        .map(|m| m.id)
        .collect();
    Some((voters, learners))
}

/// Waits until node `id` reports exactly these voters and learners.
async fn wait_members(cluster: &Cluster, id: u64, voters: &[u64], learners: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = members_of(cluster, id).await;
        if now == Some((voters.to_vec(), learners.to_vec())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} reports members {now:?}, expected voters {voters:?} and learners {learners:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a stale read of `map/key` on node `id` gives `want`.
async fn wait_stale(cluster: &Cluster, id: u64, map: &str, key: &str, want: &Value) {
    let client = cluster.client(id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get(&client, map, key, ReadMode::Stale).await.as_ref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never applied {map}/{key}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_removed_and_replaced_by_a_fresh_one() {
    let mut cluster = Cluster::start(3).await;
    let c1 = cluster.client(1).await;
    set(&c1, "m", "before", Value::Int(1)).await;
    let a1 = cluster.addr(1);

    cluster.kill(3);
    let out = ok(&cluster.cli(&["remove", "3", "--to", &a1]));
    assert!(
        out.contains("removed node 3; members now: 1 (voter), 2 (voter)"),
        "{out}"
    );
    wait_members(&cluster, 1, &[1, 2], &[]).await;

    // Removing it twice, or a node that never was a member: said plainly, nothing changes.
    for id in ["3", "9"] {
        let err = fails(&cluster.cli(&["remove", id, "--to", &a1]));
        assert!(
            err.contains(&format!(
                "node {id} is not a member of this cluster (members: 1 (voter), 2 (voter))"
            )) && err.contains("`push status` lists them"),
            "{err}"
        );
    }

    // The replacement: a fresh node with a new id and an empty data dir joins.
    cluster.add_node(4, &[]);
    cluster.wait_voters(3, Duration::from_secs(30)).await;
    cluster.wait_joined([4]).await;
    wait_members(&cluster, 1, &[1, 2, 4], &[]).await;
    wait_stale(&cluster, 4, "m", "before", &Value::Int(1)).await;
    // Writes go on, through the new node too, and a majority now includes it.
    let c4 = cluster.client(4).await;
    set(&c4, "m", "after", Value::Int(2)).await;
    assert_eq!(
        get(&c1, "m", "after", ReadMode::Linearizable).await,
        Some(Value::Int(2))
    );
    cluster.kill(2);
    set(&c1, "m", "without-2", Value::Int(3)).await;
    assert_eq!(
        get(&c4, "m", "without-2", ReadMode::Linearizable).await,
        Some(Value::Int(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_that_would_lose_quorum_or_the_last_voter_are_refused() {
    let mut cluster = Cluster::start(3).await;
    let a1 = cluster.addr(1);
    cluster.kill(3);

    // Removing a live voter while another is dead would leave one of two answering.
    let err = fails(&cluster.cli(&["remove", "2", "--to", &a1]));
    assert!(
        err.contains("removing node 2 would lose quorum: of the 2 voters left, 1 answers (nodes 1) and 2 are needed. Bring back node 3 first, or remove that dead node first"),
        "{err}"
    );
    wait_members(&cluster, 1, &[1, 2, 3], &[]).await;

    // As the message says: remove the dead one first; then the live one may go.
    ok(&cluster.cli(&["remove", "3", "--to", &a1]));
    let out = ok(&cluster.cli(&["remove", "2", "--to", &a1]));
    assert!(out.contains("members now: 1 (voter)"), "{out}");
    wait_members(&cluster, 1, &[1], &[]).await;

    // The last voter stays.
    let err = fails(&cluster.cli(&["remove", "1", "--to", &a1]));
    assert!(
        err.contains("node 1 is the last voter") && err.contains("stop the cluster instead"),
        "{err}"
    );
    let c1 = cluster.client(1).await;
    set(&c1, "m", "alone", Value::Int(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_moves_leadership() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let c = cluster.client(others[0]).await;
    set(&c, "m", "k", Value::Int(1)).await;

    // Asked through a follower, the removal runs on the leader, which removes itself.
    let out = ok(&cluster.cli(&[
        "remove",
        &leader.to_string(),
        "--to",
        &cluster.addr(others[0]),
    ]));
    assert!(out.contains(&format!("removed node {leader}")), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let mut found = None;
        for id in &others {
            if let Some(s) = cluster.status(*id).await {
                if s.role == "leader" {
                    found = Some(*id);
                }
            }
        }
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_members(&cluster, new_leader, &others, &[]).await;
    set(&c, "m", "k", Value::Int(2)).await;
    assert_eq!(
        get(&c, "m", "k", ReadMode::Linearizable).await,
        Some(Value::Int(2))
    );
    // The removed node still runs, outside the cluster, and says so.
    let s = cluster
        .status(leader)
        .await
        .expect("the removed node answers");
    assert_eq!(s.role, "non-member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_with_leave_removes_itself_on_sigterm() {
    let mut cluster = Cluster::start(2).await;
    cluster.add_node(3, &["--leave"]);
    cluster.wait_voters(3, Duration::from_secs(30)).await;
    cluster.wait_joined([3]).await;

    cluster.stop(3);
    // It said it left only once the removal had committed, then exited.
    let log = std::fs::read_to_string(cluster.data_dir(3).join("node.log")).expect("log");
    assert!(log.contains("left the cluster"), "{log}");
    wait_members(&cluster, 1, &[1, 2], &[]).await;
    // With two voters both up, the cluster writes on.
    let c1 = cluster.client(1).await;
    set(&c1, "m", "k", Value::Int(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_replicate_serve_reads_and_can_be_promoted() {
    let mut cluster = Cluster::start(3).await;
    cluster.add_node(4, &["--learner"]);
    wait_members(&cluster, 1, &[1, 2, 3], &[4]).await;

    let c1 = cluster.client(1).await;
    set(&c1, "m", "k", Value::Int(7)).await;
    // Stale reads come from the learner's own applied state.
    wait_stale(&cluster, 4, "m", "k", &Value::Int(7)).await;
    // Linearizable reads and writes through the learner go by the leader.
    let c4 = cluster.client(4).await;
    set(&c1, "m", "k", Value::Int(8)).await;
    assert_eq!(
        get(&c4, "m", "k", ReadMode::Linearizable).await,
        Some(Value::Int(8))
    );
    set(&c4, "m", "from-learner", Value::Int(9)).await;
    assert_eq!(
        get(&c1, "m", "from-learner", ReadMode::Linearizable).await,
        Some(Value::Int(9))
    );

    let status = ok(&cluster.cli(&["status", "--to", &cluster.addr(1)]));
    let row = status
        .lines()
        .find(|l| l.starts_with("4 "))
        .unwrap_or_else(|| panic!("no row for node 4:\n{status}"));
    assert!(row.contains("learner"), "{status}");

    // Not a learner, or already a voter: refused with why.
    let a1 = cluster.addr(1);
    let err = fails(&cluster.cli(&["promote", "9", "--to", &a1]));
    assert!(err.contains("node 9 is not a member"), "{err}");
    let err = fails(&cluster.cli(&["promote", "2", "--to", &a1]));
    assert!(err.contains("node 2 is already a voter"), "{err}");

    let out = ok(&cluster.cli(&["promote", "4", "--to", &cluster.addr(4)]));
    assert!(
        out.contains("node 4 is a voter; members now: 1 (voter), 2 (voter), 3 (voter), 4 (voter)"),
        "{out}"
    );
    wait_members(&cluster, 1, &[1, 2, 3, 4], &[]).await;
    // A learner is removed like any member.
    cluster.add_node(5, &["--learner"]);
    wait_members(&cluster, 1, &[1, 2, 3, 4], &[5]).await;
    ok(&cluster.cli(&["remove", "5", "--to", &a1]));
    wait_members(&cluster, 1, &[1, 2, 3, 4], &[]).await;
}

/// Waits until `push audit --json` (through node 1) shows an entry of `action` whose line
/// contains every one of `parts`; returns that line.
async fn wait_audited(cluster: &Cluster, action: &str, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a1 = cluster.addr(1);
        let out = ok(&cluster.cli(&["audit", "--to", &a1, "--action", action, "--json"]));
        if let Some(line) = out.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {action} entry with {parts:?} in the audit log:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_membership_change_is_audited_with_who_and_which_node() {
    let mut cluster = Cluster::start(2).await;
    // Node 2 joined with the cluster token.
    wait_audited(
        &cluster,
        "member-join",
        &["cluster-token: node 2 joining", "node 2 at", "as a voter"],
    )
    .await;

    cluster.add_node(3, &["--learner"]);
    wait_members(&cluster, 1, &[1, 2], &[3]).await;
    wait_audited(
        &cluster,
        "member-learner",
        &["cluster-token: node 3 joining", "node 3 at", "as a learner"],
    )
    .await;

    let a2 = cluster.addr(2);
    ok(&cluster.cli(&["promote", "3", "--to", &a2]));
    let line = wait_audited(&cluster, "member-promote", &["node 3 to a voter"]).await;
    assert!(line.contains("cluster-token: push"), "{line}");

    ok(&cluster.cli(&["remove", "3", "--to", &a2]));
    let line = wait_audited(&cluster, "member-remove", &["node 3"]).await;
    assert!(line.contains("cluster-token: push"), "{line}");
    // A refused change leaves no record.
    fails(&cluster.cli(&["remove", "9", "--to", &a2]));

    cluster.add_node(4, &["--leave"]);
    cluster.wait_voters(3, Duration::from_secs(30)).await;
    cluster.wait_joined([4]).await;
    cluster.stop(4);
    wait_audited(
        &cluster,
        "member-leave",
        &["cluster-token: node 4 (push node --leave)", "node 4"],
    )
    .await;
    let out = ok(&cluster.cli(&[
        "audit",
        "--to",
        &cluster.addr(1),
        "--action",
        "member-remove",
    ]));
    assert_eq!(
        out.lines().filter(|l| l.starts_with('#')).count(),
        1,
        "{out}"
    );
}
