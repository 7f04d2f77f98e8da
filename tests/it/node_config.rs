//! `push node --config node.ron`: the README's full example is parsed and a node starts from
//! it with every field in effect (tags, GPU, JSON logs); a bad value is refused clearly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cluster::{free_port, push_bin};
use crate::support::Cluster;

/// The `node.ron` example the README gives after "takes the same fields as the other flags".
fn readme_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = readme
        .split("`node.ron` takes the same fields as the other flags:")
        .nth(1)
        .expect("the README introduces the node.ron example");
    let start = after.find("`(").expect("example opens with `(") + 1;
    let end = start + after[start..].find(")`").expect("example closes with )`") + 1;
    after[start..end].to_string()
}

/// Kills the node on drop, also when the test fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readmes_node_ron_starts_a_node_with_every_field_in_effect() {
    let example = readme_example();
    for field in [
        "log_format: \"json\"",
        "tags: [",
        "gpu: true",
        "peer_via: {",
    ] {
        assert!(
            example.contains(field),
            "README example lacks {field}: {example}"
        );
    }
    let cluster = Cluster::launch(0, &[]);
    let data = cluster.dir.path().join("n1");
    let (listen, http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    // Only the machine-specific values change: the addresses and the data directory.
    let ron = example
        .replace("\"127.0.0.1:7001\"", &format!("{listen:?}"))
        .replace("\"127.0.0.1:8001\"", &format!("{http:?}"))
        .replace(
            "\"/var/lib/push/n1\"",
            &format!("{:?}", data.display().to_string()),
        );
    assert!(ron.contains(&listen) && ron.contains(&http), "{ron}");
    let file = cluster.dir.path().join("node.ron");
    std::fs::write(&file, &ron).expect("write node.ron");
    let log = cluster.dir.path().join("node.log");
    let node = Command::new(push_bin())
        .args(["node", "--config"])
        .arg(&file)
        .arg("--token-file")
        .arg(&cluster.token_file)
        .env("PUSH_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn push node");
    let _node = Killed(node);

    // Registered with the file's tags and GPU: the node read them and runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let registry = loop {
        let out = cluster.cli(&["registry", "--to", &listen]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("gpu,ssd") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the node from the README's node.ron did not register: {text}{}\nlog: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let row = registry
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no row for node 1: {registry}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], listen, "{row}");
    assert_eq!(cols[6], "yes", "gpu: true from the file: {row}");
    assert!(data.join("id").exists(), "data dir from the file is used");
    // log_format: "json" — every log line is one JSON object.
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.trim().is_empty(), "the node logged nothing");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[test]
fn a_bad_log_format_in_node_ron_is_refused_saying_what_to_give() {
    let cluster = Cluster::launch(0, &[]);
    let file = cluster.dir.path().join("node.ron");
    let data = cluster.dir.path().join("n1");
    std::fs::write(
        &file,
        format!(
            "(id: 1, data: {:?}, log_format: \"yaml\")",
            data.display().to_string()
        ),
    )
    .expect("write");
    let out = Command::new(push_bin())
        .args(["node", "--config"])
        .arg(&file)
        .output()
        .expect("run push node");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("log_format \"yaml\"") && stderr.contains("\"text\" or \"json\""),
        "{stderr}"
    );
}

#[test]
fn io_threads_of_zero_is_refused_saying_what_to_give() {
    let cluster = Cluster::launch(0, &[]);
    let out = Command::new(push_bin())
        .args(["node", "--io-threads", "0", "--data"])
        .arg(cluster.dir.path().join("n1"))
        .output()
        .expect("run push node");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--io-threads must be at least 1") && stderr.contains("half the cores"),
        "{stderr}"
    );
    assert!(
        !cluster.dir.path().join("n1").exists(),
        "nothing is created"
    );
}
