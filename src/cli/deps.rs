//! An app's dependencies at deploy time: reads `requirements.txt` or `pyproject.toml`
//! `[project] dependencies`, resolves them on this machine into wheels for the cluster's
//! Python (`pip download --only-binary=:all: --platform … --python-version … --implementation
//! … --abi …`, from the index or, with `--wheels DIR`, a local wheelhouse only), and adds
//! them to the version's files under `.wheels/`; and `push envs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use push_protocol::{Op, PlatformInfo, Reply};

use super::target::Target;
use crate::model::code_store::{MAX_FILE_BYTES, WHEELS_DIR};

#[derive(clap::Args, Debug)]
pub struct EnvsArgs {
    #[command(flatten)]
    pub target: Target,
}

/// The Python this machine resolves with: `PUSH_PYTHON`, else `python3`.
fn python() -> PathBuf {
    std::env::var_os("PUSH_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// The requirement lines of the app in `dir`, and the file they came from; None when it
/// declares no dependencies.
pub fn requirements(dir: &Path) -> anyhow::Result<Option<(Vec<String>, &'static str)>> {
    let txt = dir.join("requirements.txt");
    if txt.is_file() {
        let text =
            std::fs::read_to_string(&txt).with_context(|| format!("reading {}", txt.display()))?;
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.split(" #").next().unwrap_or_default().trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        return Ok((!lines.is_empty()).then_some((lines, "requirements.txt")));
    }
    let toml = dir.join("pyproject.toml");
    if !toml.is_file() {
        return Ok(None);
    }
    const SCRIPT: &str = "import json, sys, tomllib\n\
        with open(sys.argv[1], 'rb') as f: p = tomllib.load(f)\n\
        print(json.dumps(p.get('project', {}).get('dependencies', [])))";
    let out = std::process::Command::new(python())
        .args(["-c", SCRIPT])
        .arg(&toml)
        .output()
        .with_context(|| format!("running {} to read pyproject.toml", python().display()))?;
    if !out.status.success() {
        bail!(
            "cannot read [project] dependencies of {} (needs Python 3.11+ for tomllib; set \
             PUSH_PYTHON): {}",
            toml.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let lines: Vec<String> = serde_json::from_slice(&out.stdout)
        .context("reading the dependencies pyproject.toml lists")?;
    Ok((!lines.is_empty()).then_some((lines, "pyproject.toml")))
}

/// The `pip download` arguments that select wheels for `platform`.
pub fn pip_target_args(platform: &PlatformInfo) -> Vec<String> {
    let short: String = platform
        .python
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let mut args = vec![
        "--only-binary=:all:".to_string(),
        "--python-version".into(),
        short,
        "--implementation".into(),
        platform.implementation.clone(),
        "--abi".into(),
        platform.abi.clone(),
    ];
    for tag in &platform.platforms {
        args.push("--platform".into());
        args.push(tag.clone());
    }
    args
}

/// Resolves the app's dependencies into wheels for the cluster's Python (the one every
/// member node runs; different Pythons are refused before anything is uploaded) and adds
/// them to `files` as `.wheels/NAME`; returns how many (0 when the app declares none).
pub async fn add_wheels(
    dir: &Path,
    wheelhouse: Option<&Path>,
    target: &Target,
    client: &push_protocol::Client,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<usize> {
    let Some((lines, source)) = requirements(dir)? else {
        return Ok(0);
    };
    // Every node installs the same wheels: they must fit every node's Python.
    let nodes = super::platforms::every_node(target, client).await?;
    let platform = super::platforms::common_platform(&nodes)?;
    eprintln!(
        "resolving {} dependencies from {source} for the Python of {} node(s): {} ({}, {} platform tags){}",
        lines.len(),
        nodes.len(),
        platform.python,
        platform.abi,
        platform.platforms.len(),
        wheelhouse.map_or(String::new(), |w| format!(", from {} only", w.display()))
    );
    let work = tempfile::tempdir().context("creating a temporary directory for wheels")?;
    let req = work.path().join("requirements.txt");
    std::fs::write(&req, lines.join("\n") + "\n").context("writing the requirements")?;
    let out_dir = work.path().join("wheels");
    let mut command = tokio::process::Command::new(python());
    command
        .args(["-m", "pip", "download", "--disable-pip-version-check", "-q"])
        .args(pip_target_args(&platform))
        .arg("-d")
        .arg(&out_dir)
        .arg("-r")
        .arg(&req)
        .stdin(Stdio::null());
    if let Some(wheelhouse) = wheelhouse {
        command
            .arg("--no-index")
            .arg("--find-links")
            .arg(wheelhouse);
    }
    let out = command
        .output()
        .await
        .with_context(|| format!("running {} -m pip download", python().display()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("ERROR")).collect();
        bail!(
            "not deployed, HEAD unchanged: the dependencies do not resolve to wheels for the \
             cluster's Python {} ({}):\n{}\n(are they published as wheels for that platform? \
             with --wheels, is each one in the wheelhouse?)",
            platform.python,
            platform.abi,
            if errors.is_empty() {
                text.trim().to_string()
            } else {
                errors.join("\n")
            }
        );
    }
    let mut count = 0;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .context("reading the downloaded wheels")?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.ends_with(".whl") {
            bail!("pip downloaded {name}, which is not a wheel; only wheels deploy");
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {name}"))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            bail!(
                "not deployed: {name} is {} bytes; the limit for one file (a wheel too) is \
                 {MAX_FILE_BYTES} bytes ({} MiB)",
                bytes.len(),
                MAX_FILE_BYTES >> 20
            );
        }
        files.insert(format!("{WHEELS_DIR}{name}"), bytes);
        count += 1;
    }
    Ok(count)
}

pub async fn envs(args: EnvsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let rows = match client.call(Op::Envs).await? {
        Reply::Envs(rows) => rows,
        other => bail!("unexpected reply {other:?}"),
    };
    if rows.is_empty() {
        println!("no environments: no app version declares dependencies");
        return Ok(());
    }
    println!(
        "{:<14} {:<12} {:>10}  {:<16} WHEELS",
        "ENV", "APP", "SIZE", "VERSIONS"
    );
    for row in rows {
        let size = row.bytes.map_or("not here".to_string(), |b| {
            format!("{:.1} MB", b as f64 / 1e6)
        });
        let versions: Vec<String> = row.versions.iter().map(|v| format!("v{v}")).collect();
        let mark = if row.head { " (HEAD)" } else { "" };
        println!(
            "{:<14} {:<12} {:>10}  {:<16} {}",
            &row.hash[..12.min(row.hash.len())],
            row.app,
            size,
            format!("{}{mark}", versions.join(",")),
            row.wheels.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_txt_lines_without_comments() {
        let dir = tempfile::tempdir().unwrap();
        assert!(requirements(dir.path()).unwrap().is_none());
        std::fs::write(
            dir.path().join("requirements.txt"),
            "# deps\ntinypkg==1.0  # pinned\n\nother>=2\n",
        )
        .unwrap();
        let (lines, source) = requirements(dir.path()).unwrap().unwrap();
        assert_eq!(lines, vec!["tinypkg==1.0", "other>=2"]);
        assert_eq!(source, "requirements.txt");
    }

    #[test]
    fn pip_is_told_the_clusters_python() {
        let args = pip_target_args(&PlatformInfo {
            python: "3.11.7".into(),
            implementation: "cp".into(),
            abi: "cp311".into(),
            platforms: vec!["manylinux_2_17_x86_64".into(), "linux_x86_64".into()],
        });
        let text = args.join(" ");
        assert!(
            text.contains("--python-version 3.11 --implementation cp --abi cp311")
                && text.contains("--platform manylinux_2_17_x86_64 --platform linux_x86_64"),
            "{text}"
        );
    }
}
