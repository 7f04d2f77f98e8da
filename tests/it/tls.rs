//! TLS for client and peer traffic: a cluster made with `push tls-init` certificates forms,
//! replicates and forwards over TLS; clients without the CA, or with another one, get clear
//! errors; half a TLS setup is refused at start.

use std::time::{Duration, Instant};

use crate::support::cluster::{fails, ok};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_clients_with_the_ca_and_refuses_others_clearly() {
    let certs = tempfile::tempdir().expect("dir");
    let dir = certs.path().join("tls");
    let out = std::process::Command::new(crate::support::cluster::push_bin())
        .args(["tls-init", dir.to_str().expect("utf8")])
        .output()
        .expect("push tls-init");
    let text = ok(&out);
    assert!(text.contains("--tls-ca"), "{text}");
    let pem = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    let (cert, key, ca) = (pem("node.pem"), pem("node-key.pem"), pem("ca.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable only by its owner"
        );
    }

    let mut cluster = Cluster::launch(
        3,
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
    );
    let (a1, a2, a3) = (cluster.addr(1), cluster.addr(2), cluster.addr(3));
    // Peers handshake over TLS: three voters and a leader, seen through a TLS client.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = cluster.cli(&["status", "--to", &a3, "--tls-ca", &ca]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let roles = text
            .lines()
            .filter(|l| l.starts_with(char::is_numeric))
            .filter(|l| l.contains(" leader ") || l.contains(" follower "))
            .count();
        if out.status.success() && roles == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 3-node TLS cluster: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Writes through any node (followers forward over TLS) and reads from another.
    for (i, addr) in [&a1, &a2, &a3].into_iter().enumerate() {
        let v = format!("v{i}");
        ok(&cluster.cli(&[
            "kv",
            "set",
            "m",
            &format!("k{i}"),
            &v,
            "--to",
            addr,
            "--tls-ca",
            &ca,
        ]));
    }
    for i in 0..3 {
        let out = ok(&cluster.cli(&[
            "kv",
            "get",
            "m",
            &format!("k{i}"),
            "--to",
            &a2,
            "--tls-ca",
            &ca,
        ]));
        assert!(out.contains(&format!("v{i}")), "{out}");
    }
    // PUSH_TLS_CA works like --tls-ca.
    let out = std::process::Command::new(crate::support::cluster::push_bin())
        .args(["kv", "get", "m", "k0", "--to", &a1, "--token-file"])
        .arg(&cluster.token_file)
        .env("PUSH_TLS_CA", &ca)
        .output()
        .expect("run push");
    assert!(ok(&out).contains("v0"));

    // A plain client is told the node speaks TLS, not that its request was too large.
    let err = fails(&cluster.cli(&["kv", "get", "m", "k0", "--to", &a1]));
    assert!(
        err.contains("this node speaks TLS, so pass --tls-ca")
            && !err.contains("exceeds the limit")
            && !err.contains("send smaller requests"),
        "{err}"
    );
    // A client trusting another CA fails the handshake and is told what to check.
    let other = certs.path().join("other");
    ok(
        &std::process::Command::new(crate::support::cluster::push_bin())
            .args(["tls-init", other.to_str().expect("utf8")])
            .output()
            .expect("push tls-init"),
    );
    let other_ca = other.join("ca.pem");
    let err = fails(&cluster.cli(&[
        "kv",
        "get",
        "m",
        "k0",
        "--to",
        &a1,
        "--tls-ca",
        other_ca.to_str().expect("utf8"),
    ]));
    assert!(
        err.contains("TLS handshake failed") && !err.contains("is a Push node running there"),
        "{err}"
    );
    // The CA signs a certificate for another host later: a node started with it serves
    // clients that trust the same CA.
    let host2 = certs.path().join("host2");
    let out = ok(
        &std::process::Command::new(crate::support::cluster::push_bin())
            .args([
                "tls-init",
                host2.to_str().expect("utf8"),
                "--host",
                "node4.example",
            ])
            .arg("--ca-dir")
            .arg(&dir)
            .output()
            .expect("push tls-init --ca-dir"),
    );
    assert!(out.contains("node4.example"), "{out}");
    assert_eq!(
        std::fs::read(host2.join("ca.pem")).expect("ca copy"),
        std::fs::read(&ca).expect("ca"),
        "the new host's directory holds the same CA"
    );
    let host_pem = |name: &str| host2.join(name).to_str().expect("utf8").to_string();
    cluster.add_node(
        4,
        &[
            "--tls-cert",
            &host_pem("node.pem"),
            "--tls-key",
            &host_pem("node-key.pem"),
            "--tls-ca",
            &ca,
        ],
    );
    let a4 = cluster.addr(4);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = cluster.cli(&["kv", "get", "m", "k1", "--to", &a4, "--tls-ca", &ca]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("v1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 (certificate from --ca-dir) never served: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // tls-init refuses to overwrite keys.
    let err = fails(
        &std::process::Command::new(crate::support::cluster::push_bin())
            .args(["tls-init", other.to_str().expect("utf8")])
            .output()
            .expect("push tls-init"),
    );
    assert!(err.contains("exists"), "{err}");
    // The nodes kept serving TLS clients throughout.
    let out = ok(&cluster.cli(&["kv", "get", "m", "k2", "--to", &a3, "--tls-ca", &ca]));
    assert!(out.contains("v2"), "{out}");

    // Half a TLS setup is refused at start with what to pass.
    let data = certs.path().join("half");
    let err = fails(
        &std::process::Command::new(crate::support::cluster::push_bin())
            .args(["node", "--id", "9", "--listen", "127.0.0.1:1", "--data"])
            .arg(&data)
            .args(["--tls-cert", &cert])
            .output()
            .expect("push node"),
    );
    assert!(
        err.contains("--tls-key") && err.contains("tls-init"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_from_node_ron_secure_peer_traffic_too() {
    let certs = tempfile::tempdir().expect("dir");
    let dir = certs.path().join("tls");
    ok(
        &std::process::Command::new(crate::support::cluster::push_bin())
            .args(["tls-init", dir.to_str().expect("utf8")])
            .output()
            .expect("push tls-init"),
    );
    let pem = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    let ron = certs.path().join("node.ron");
    std::fs::write(
        &ron,
        format!(
            "(tls_cert: {:?}, tls_key: {:?}, tls_ca: {:?})",
            pem("node.pem"),
            pem("node-key.pem"),
            pem("ca.pem")
        ),
    )
    .expect("write node.ron");
    // Node 2 joins node 1 over TLS: only possible if the CA from node.ron is used for dialling.
    let cluster = Cluster::launch(2, &["--config", ron.to_str().expect("utf8")]);
    let ca = pem("ca.pem");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = cluster.cli(&["status", "--to", &cluster.addr(2), "--tls-ca", &ca]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let roles = text
            .lines()
            .filter(|l| l.starts_with(char::is_numeric))
            .filter(|l| l.contains(" leader ") || l.contains(" follower "))
            .count();
        if out.status.success() && roles == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never joined over TLS: {text}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
