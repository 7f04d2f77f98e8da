//! Secrets and config reach WSGI/ASGI apps through the environment (issue 18): the real Flask
//! example app on a 3-node cluster reads `os.environ` (and its WSGI `environ`) unchanged; a
//! change reaches the next requests within the documented second; the secret's value appears
//! in no node's log; the app runs in a python pool of its own.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::cluster::{ok, push_bin, with_stdin};
use crate::support::http::request;
use crate::support::Cluster;

const SECRET: &str = "postgres://user:pl4nted-Secret-v4lue@db/prod";
const ROTATED: &str = "postgres://user:r0tated-Secret-v4lue@db/prod";

fn sha256(text: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
        ])
        .arg(text)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `push secret set flask NAME` with the value on stdin.
fn set_secret(cluster: &Cluster, name: &str, value: &str) {
    ok(&with_stdin(
        Command::new(push_bin())
            .args(["secret", "set", "flask", name, "--to", &cluster.addr(2)])
            .arg("--token-file")
            .arg(&cluster.token_file)
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN"),
        value,
    ));
}

/// Polls `/settings` of the flask app on node `id` until its JSON has every `want` part.
async fn wait_settings(cluster: &Cluster, id: u64, want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = request(
            &cluster.http(id),
            "GET",
            "/settings",
            &[("X-Push-App", "flask")],
            b"",
        )
        .await;
        if let Ok(r) = &r {
            // Compact, whatever separators the JSON encoder chose.
            let text = r.text().replace([' ', '\n'], "");
            if r.status == 200 && want.iter().all(|w| text.contains(w)) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never answered {want:?}; last: {:?}\n{}",
            r.map(|r| (r.status, r.text())),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_config_reach_a_flask_app_through_its_environment() {
    let cluster = Cluster::start_with(3, &["--py-workers", "1"]).await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flask-app");
    ok(&cluster.cli(&[
        "deploy",
        example.to_str().expect("utf8"),
        "--app",
        "flask",
        "--to",
        &cluster.addr(1),
    ]));
    for id in 1..=3 {
        wait_settings(
            &cluster,
            id,
            &["\"greeting\":\"hello\"", "\"database_sha256\":null"],
        )
        .await;
    }
    // Set through a follower; the next requests (within a second) see them, no deploy.
    set_secret(&cluster, "DATABASE_URL", SECRET);
    ok(&cluster.cli(&[
        "config",
        "set",
        "flask",
        "GREETING",
        "hi",
        "--to",
        &cluster.addr(1),
    ]));
    let hash = sha256(SECRET);
    for id in 1..=3 {
        wait_settings(
            &cluster,
            id,
            &[
                "\"greeting\":\"hi\"",
                "\"greeting_in_environ\":\"hi\"",
                &format!("\"database_sha256\":\"{hash}\""),
            ],
        )
        .await;
    }

    // A change reaches the next requests (within a second) on every node, without a deploy.
    set_secret(&cluster, "DATABASE_URL", ROTATED);
    ok(&cluster.cli(&[
        "config",
        "set",
        "flask",
        "GREETING",
        "hey",
        "--to",
        &cluster.addr(3),
    ]));
    let rotated = sha256(ROTATED);
    for id in 1..=3 {
        wait_settings(
            &cluster,
            id,
            &[
                "\"greeting\":\"hey\"",
                &format!("\"database_sha256\":\"{rotated}\""),
            ],
        )
        .await;
    }
    // A removed entry leaves the environment.
    ok(&cluster.cli(&[
        "config",
        "rm",
        "flask",
        "GREETING",
        "--to",
        &cluster.addr(1),
    ]));
    for id in 1..=3 {
        wait_settings(
            &cluster,
            id,
            &["\"greeting\":\"hello\"", "\"greeting_in_environ\":null"],
        )
        .await;
    }

    // The flask app runs in a pool of its own; the node's main pool holds no secret.
    let status = cluster.status(1).await.expect("status");
    assert!(
        status
            .workers
            .iter()
            .any(|w| w.pool.as_deref() == Some("flask/web")),
        "{:?}",
        status.workers
    );
    let client = cluster.client(1).await;
    let (_, _, r) = crate::support::eval::eval_streams(
        &client,
        None,
        "import os\nsorted(k for k in ('DATABASE_URL', 'GREETING') if k in os.environ)",
    )
    .await;
    assert_eq!(r.value.as_deref(), Some("[]"), "{r:?}");
    let logs = cluster.logs();
    assert!(
        !logs.contains(SECRET) && !logs.contains(ROTATED),
        "a secret value in the logs"
    );
}
