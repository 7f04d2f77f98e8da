//! `scripts/bench-web` run once with tiny durations so it cannot rot: Push (Flask, FastAPI and
//! a `@push.route` hello) against gunicorn and uvicorn, each printed as a table row and as
//! JSON. Nothing here asserts speed, only that every system was measured.

use std::process::Command;

use crate::support::cluster::push_bin;

#[test]
fn bench_web_prints_a_row_and_a_run_for_every_system() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out_file = std::env::temp_dir().join(format!("bench-web-test-{}.json", std::process::id()));
    let out = Command::new(format!("{root}/scripts/bench-web"))
        .env("PUSH_BIN", push_bin())
        .env("ROUNDS", "1")
        .env("SECS", "1")
        .env("OUT", &out_file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run scripts/bench-web");
    let _ = std::fs::remove_file(&out_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench-web failed:\n{stdout}\n{stderr}"
    );
    let json: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON line last:\n{stdout}"));
    assert_eq!(json["bench"], "web", "{json}");
    let systems = [
        "push flask",
        "gunicorn flask",
        "push fastapi",
        "uvicorn fastapi",
        "push route",
    ];
    for system in systems {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("| {system} |"))),
            "no table row for {system}:\n{stdout}"
        );
        let runs: Vec<_> = json["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter(|r| r["system"] == system)
            .collect();
        assert_eq!(runs.len(), 1, "{system}: {json}");
        assert!(
            runs[0]["requests"].as_u64().unwrap_or(0) > 0,
            "{system}: {json}"
        );
        assert_eq!(runs[0]["errors"], 0, "{system}: {json}");
    }
    for (push, peer) in [
        ("push flask", "gunicorn flask"),
        ("push fastapi", "uvicorn fastapi"),
    ] {
        assert_eq!(json["summary"][push]["ratio_vs"], peer, "{json}");
        assert!(json["summary"][push]["ratio"].is_number(), "{json}");
    }
}
