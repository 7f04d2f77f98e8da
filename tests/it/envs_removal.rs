//! Unused dependency environments are removed on every node once they fall out of each app's
//! last `--keep-envs K` versions, and a rollback to a kept version runs at once on the
//! environment still installed (nothing reinstalled). Removal never touches an environment
//! younger than 10 minutes, so the test ages the environment directories the way time would
//! (their modification time, which is what the node reads).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::deps::{deploy, good_init, wait_all_serve, wheelhouse, write_app, WAIT};
use crate::support::cluster::ok;
use crate::support::http::request;
use crate::support::Cluster;

/// The environment directories installed on node `id`.
fn env_dirs(cluster: &Cluster, id: u64) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(cluster.data_dir(id).join("envs"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.len() == 64)
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Sets every installed environment's modification time on every node two hours back.
fn age_envs(cluster: &Cluster) {
    for id in 1..=3 {
        for dir in env_dirs(cluster, id) {
            let path = cluster.data_dir(id).join("envs").join(dir);
            set_old_mtime(&path);
        }
    }
}

fn set_old_mtime(path: &Path) {
    let out = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(path)
        .output()
        .expect("touch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_environments_are_removed_everywhere_and_a_kept_one_rolls_back_at_once() {
    let cluster = Cluster::start_with(3, &["--py-workers", "1", "--keep-envs", "2"]).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();

    // v1..v5, each with another version of the package: five environments.
    let mut hashes = Vec::new();
    for v in 1..=5 {
        let version = format!("{v}.0");
        let house = wheelhouse(
            root,
            &format!("h{v}"),
            &version,
            "py3-none-any",
            &good_init(&version),
            false,
        );
        let app = write_app(root, &format!("tinypkg=={version}"), "");
        let out = deploy(&cluster, &app, &house);
        assert!(ok(&out).contains(&format!("deployed main@v{v}")), "{out:?}");
        wait_all_serve(&cluster, &version).await;
        let r = request(&cluster.http(1), "GET", "/dep", &[], b"")
            .await
            .expect("get");
        let hash = r.text().split(' ').nth(1).unwrap_or_default().to_string();
        assert_eq!(hash.len(), 64, "{}", r.text());
        hashes.push(hash);
        // Older than the removal's age floor from here on, as after ten quiet minutes.
        age_envs(&cluster);
    }

    // After v5 loaded, every node keeps v4's and v5's environments (K = 2) and has removed
    // v1's and v2's (their pools stopped long before). v3's pool may still have been
    // finishing when v5 loaded, so it goes at this load or the next.
    let deadline = Instant::now() + WAIT;
    for id in 1..=3 {
        loop {
            let dirs = env_dirs(&cluster, id);
            let gone = !dirs.contains(&hashes[0]) && !dirs.contains(&hashes[1]);
            if gone {
                assert!(
                    dirs.contains(&hashes[3]) && dirs.contains(&hashes[4]),
                    "node {id}: {dirs:?}"
                );
                assert!(dirs.len() <= 3, "node {id} keeps more than K + 1: {dirs:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} still has v1's or v2's environment: {dirs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // `push envs` says so: the removed ones are "not here", the kept ones have a size.
    let envs = ok(&cluster.cli(&["envs", "--to", &cluster.addr(2)]));
    let line = |hash: &str| {
        envs.lines()
            .find(|l| l.starts_with(&hash[..12]))
            .unwrap_or_else(|| panic!("no row for {hash}: {envs}"))
            .to_string()
    };
    assert!(line(&hashes[0]).contains("not here"), "{envs}");
    assert!(line(&hashes[1]).contains("not here"), "{envs}");
    assert!(line(&hashes[3]).contains("MB"), "{envs}");
    assert!(
        line(&hashes[4]).contains("MB") && line(&hashes[4]).contains("(HEAD)"),
        "{envs}"
    );

    // Rollback to v4: its environment is still there, so every node serves it at once from
    // the same directory, not reinstalled (its modification time is the aged one).
    let kept: Vec<_> = (1..=3)
        .map(|id| mtime(&cluster.data_dir(id).join("envs").join(&hashes[3])))
        .collect();
    ok(&cluster.cli(&["rollback", "4", "--to", &cluster.addr(1)]));
    wait_all_serve(&cluster, "4.0").await;
    for id in 1..=3 {
        let r = request(&cluster.http(id), "GET", "/dep", &[], b"")
            .await
            .expect("get");
        assert_eq!(r.text(), format!("4.0 {}", hashes[3]), "node {id}");
        let path = cluster.data_dir(id).join("envs").join(&hashes[3]);
        assert_eq!(
            mtime(&path),
            kept[(id - 1) as usize],
            "node {id} reinstalled v4's environment"
        );
    }
}
