//! `push bench` against a real cluster: every subcommand runs briefly and reports throughput
//! and p50/p99/max as text and as JSON. Nothing here asserts speed, only well-formed figures.

use crate::support::cluster::ok;
use crate::support::Cluster;

fn check(json: &serde_json::Value, bench: &str, phases: usize) {
    assert_eq!(json["bench"], bench, "{json}");
    let results = json["results"].as_object().expect("results");
    assert_eq!(results.len(), phases, "{json}");
    for (name, s) in results {
        let f = |k: &str| s[k].as_f64().unwrap_or(-1.0);
        assert!(s["ok"].as_u64().unwrap_or(0) > 0, "{name}: {s}");
        assert!(f("per_second") > 0.0, "{name}: {s}");
        assert!(
            0.0 < f("p50_ms") && f("p50_ms") <= f("p99_ms") && f("p99_ms") <= f("max_ms"),
            "{name}: {s}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bench_prints_throughput_and_percentiles_as_text_and_json() {
    let cluster = Cluster::start(3).await;
    let a = cluster.addr(2);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--json", "--to", &a]);
        let out = ok(&cluster.cli(&all));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let kv = json(&["kv", "--clients", "2", "--duration", "0.5"]);
    check(&kv, "kv", 1);
    assert_eq!(kv["params"]["clients"], 2);
    check(
        &json(&["kv", "--read", "--duration", "0.3", "--no-leader"]),
        "kv",
        1,
    );
    let eval = json(&["eval", "--requests", "30", "--interrupts", "5"]);
    check(&eval, "eval", 3);
    assert_eq!(
        eval["results"]["interrupt a running loop"]["ok"], 5,
        "every interrupt ended its loop with a KeyboardInterrupt: {eval}"
    );
    check(
        &json(&["queue", "--clients", "2", "--duration", "0.5"]),
        "queue",
        2,
    );
    check(
        &json(&["deploy", "--rounds", "2", "--modules", "5"]),
        "deploy",
        1,
    );

    // Text: one line per phase with the same figures.
    let out = ok(&cluster.cli(&["bench", "queue", "--duration", "0.3", "--to", &a]));
    for phase in ["queue put", "queue take+ack"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no {phase} line: {out}"));
        assert!(
            line.contains("/s")
                && line.contains("p50")
                && line.contains("p99")
                && line.contains("max"),
            "{line}"
        );
    }

    // Failover kills this test cluster's leader (by the pid it reports), so it goes last.
    check(&json(&["failover", "--yes"]), "failover", 1);
}
