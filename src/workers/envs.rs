//! App environments on disk: installing a version's wheels once per environment hash
//! (`pip install --no-index --target <data>/envs/<hash>`), the interpreter's platform for
//! `push deploy` to resolve wheels against, sizes for `push envs`, and removing environments
//! no recent version uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use push_protocol::PlatformInfo;

/// Why an environment could not be installed or described.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvError {
    #[error(
        "no Python executable for {version} on this node (looked for {looked}); install the \
         same Python the node links, or set PUSH_PYTHON to it"
    )]
    NoPython { version: String, looked: String },
    #[error("installing the dependencies failed on this node: {0}")]
    Install(String),
    #[error("{0}")]
    Io(String),
}

fn io(what: &str, e: std::io::Error) -> EnvError {
    EnvError::Io(format!("{what}: {e}"))
}

/// The Python executable matching the workers' interpreter: `PUSH_PYTHON` if set, else
/// `<prefix>/bin/pythonX.Y` of the workers' `sys.prefix`, else `pythonX.Y` on the PATH.
pub fn python_executable(version: &str, prefix: &str) -> Result<PathBuf, EnvError> {
    if let Some(python) = std::env::var_os("PUSH_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let short: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
    if short.is_empty() {
        return Err(EnvError::NoPython {
            version: "the node's Python (no worker has started yet)".into(),
            looked: "nothing".into(),
        });
    }
    let name = format!("python{short}");
    let in_prefix = Path::new(prefix).join("bin").join(&name);
    if !prefix.is_empty() && in_prefix.is_file() {
        return Ok(in_prefix);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| EnvError::NoPython {
        version: version.to_string(),
        looked: format!("{} and {name} on the PATH", in_prefix.display()),
    })
}

/// Asks `python` for its version, implementation, ABI and platform tags (pip's own tags).
pub async fn platform(python: &Path) -> Result<PlatformInfo, EnvError> {
    const SCRIPT: &str = r#"
import json, platform
try:
    from packaging import tags
except ImportError:
    from pip._vendor.packaging import tags
seen = list(tags.sys_tags())
plats = []
for t in seen:
    if t.platform != "any" and t.platform not in plats:
        plats.append(t.platform)
abi = next((t.abi for t in seen if t.abi not in ("none", "abi3")), "none")
print(json.dumps({"python": platform.python_version(), "implementation": tags.interpreter_name(),
                  "abi": abi, "platforms": plats}))
"#;
    let out = tokio::process::Command::new(python)
        .args(["-c", SCRIPT])
        .output()
        .await
        .map_err(|e| io(&format!("running {}", python.display()), e))?;
    if !out.status.success() {
        return Err(EnvError::Io(format!(
            "{} could not name its platform tags: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| EnvError::Io(format!("reading the platform tags: {e}")))?;
    let text = |k: &str| value[k].as_str().unwrap_or_default().to_string();
    Ok(PlatformInfo {
        python: text("python"),
        implementation: text("implementation"),
        abi: text("abi"),
        platforms: value["platforms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The directory of environment `hash` under `envs_dir`.
pub fn env_dir(envs_dir: &Path, hash: &str) -> PathBuf {
    envs_dir.join(hash)
}

/// Installs environment `hash` from `wheels` (file name, the node's blob file of it) unless it
/// is installed: links (or copies) the wheels beside it, runs `python -m pip install --no-index --find-links` into a
/// temporary directory and renames that to `<envs_dir>/<hash>`, so an environment directory
/// exists only complete. Returns its directory and whether it was installed now.
pub async fn install(
    python: &Path,
    envs_dir: &Path,
    hash: &str,
    wheels: Vec<(String, PathBuf)>,
) -> Result<(PathBuf, bool), EnvError> {
    let dir = env_dir(envs_dir, hash);
    if dir.is_dir() {
        return Ok((dir, false));
    }
    let work = envs_dir.join(format!(".installing-{hash}"));
    let _ = std::fs::remove_dir_all(&work);
    let wheel_dir = work.join("wheels");
    let target = work.join("site");
    std::fs::create_dir_all(&wheel_dir).map_err(|e| io("creating the environment", e))?;
    let mut files = Vec::new();
    for (name, blob) in wheels {
        if name.contains('/') || !name.ends_with(".whl") {
            return Err(EnvError::Install(format!(
                "{name:?} is not a wheel file name; redeploy with `push deploy`"
            )));
        }
        let path = wheel_dir.join(&name);
        // A link costs no copy (the blob file never changes); a copy where links fail.
        std::fs::hard_link(&blob, &path)
            .or_else(|_| std::fs::copy(&blob, &path).map(|_| ()))
            .map_err(|e| io(&format!("writing {name}"), e))?;
        files.push(path);
    }
    let out = tokio::process::Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-index",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--quiet",
            "--find-links",
        ])
        .arg(&wheel_dir)
        .arg("--target")
        .arg(&target)
        .args(&files)
        .output()
        .await
        .map_err(|e| io(&format!("running {} -m pip", python.display()), e))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(EnvError::Install(pip_error(&out.stderr)));
    }
    std::fs::rename(&target, &dir).map_err(|e| io("keeping the environment", e))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok((dir, true))
}

/// pip's error lines (those after "ERROR:"), or its whole stderr when it printed none.
fn pip_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let errors: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("ERROR:"))
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let chosen = if errors.is_empty() {
        text.trim().to_string()
    } else {
        errors.join("\n")
    };
    chosen.chars().take(4000).collect()
}

/// Bytes of the files under `dir` (0 when it does not exist).
pub fn size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// The environments installed under `envs_dir`.
pub fn installed(envs_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(envs_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Removes every installed environment not in `keep` and older than `min_age` (one just
/// installed by a deploy gate belongs to no version yet); returns the hashes removed.
pub fn remove_unused(
    envs_dir: &Path,
    keep: &BTreeSet<String>,
    min_age: std::time::Duration,
) -> Vec<String> {
    let mut removed = Vec::new();
    for hash in installed(envs_dir) {
        let age = std::fs::metadata(env_dir(envs_dir, &hash))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if keep.contains(&hash) || age < min_age {
            continue;
        }
        match std::fs::remove_dir_all(env_dir(envs_dir, &hash)) {
            Ok(()) => removed.push(hash),
            Err(e) => tracing::warn!(%hash, "cannot remove an unused environment: {e}"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_errors_are_kept_and_the_rest_dropped() {
        let err = b"Looking in links: x\nProcessing ./a.whl\nERROR: a-1.0-cp39-cp39-win_amd64.whl is not a supported wheel on this platform.\n";
        assert_eq!(
            pip_error(err),
            "ERROR: a-1.0-cp39-cp39-win_amd64.whl is not a supported wheel on this platform."
        );
        assert_eq!(pip_error(b"Traceback: boom\n"), "Traceback: boom");
    }

    #[test]
    fn unused_environments_go_and_kept_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["aa", "bb", ".installing-cc"] {
            std::fs::create_dir_all(dir.path().join(name).join("pkg")).unwrap();
            std::fs::write(dir.path().join(name).join("pkg/m.py"), "x = 1\n").unwrap();
        }
        assert_eq!(installed(dir.path()), vec!["aa", "bb"]);
        assert_eq!(size(&dir.path().join("aa")), 6);
        let keep = BTreeSet::from(["bb".to_string()]);
        let hour = std::time::Duration::from_secs(3600);
        assert!(remove_unused(dir.path(), &keep, hour).is_empty(), "too new");
        assert_eq!(
            remove_unused(dir.path(), &keep, std::time::Duration::ZERO),
            vec!["aa"]
        );
        assert_eq!(installed(dir.path()), vec!["bb"]);
    }
}
