//! `push export VERSION DIR`: writes a deployed version's files back to disk, byte for byte
//! as they were deployed.

use std::path::{Path, PathBuf};

use std::io::Write;

use anyhow::{bail, Context};
use push_protocol::{Op, Reply, DEFAULT_APP};
use sha2::{Digest, Sha256};

use super::code::parse_version;
use super::progress::Progress;
use super::target::Target;
use crate::model::code_store::check_path;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The version: `3` or `v3` (of the default app), or `APP@3`
    pub version: String,
    /// Directory to write the files into (created if missing; must be empty unless --force)
    pub dir: PathBuf,
    /// Write into a directory that is not empty, replacing files of the same names
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `APP@3`, `APP@v3`, `3` or `v3` → (app, version).
pub fn parse_spec(spec: &str) -> anyhow::Result<(String, u64)> {
    let (app, version) = match spec.rsplit_once('@') {
        Some(("", _)) => bail!("{spec:?} names no app before '@'; write APP@VERSION, like main@3"),
        Some((app, version)) => (app, version),
        None => (DEFAULT_APP, spec),
    };
    let version = parse_version(version)
        .with_context(|| format!("{spec:?} is not VERSION or APP@VERSION (like 3 or main@3)"))?;
    Ok((app.to_string(), version))
}

/// Refuses a directory that holds anything, unless `force`.
fn check_target(dir: &Path, force: bool) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{} exists and is not a directory; pick a directory to export into",
            dir.display()
        );
    }
    if force || !dir.exists() {
        return Ok(());
    }
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} is not empty; export into a new or empty directory, or pass --force to write over files of the same names",
            dir.display()
        );
    }
    Ok(())
}

/// Checks every path the node sent stays inside `dir` (a bad one refuses the export
/// before anything is written), then creates `dir`.
fn prepare<'a>(dir: &Path, paths: impl Iterator<Item = &'a String>) -> anyhow::Result<()> {
    for path in paths {
        check_path(path).map_err(|e| anyhow::anyhow!("the node sent a bad file name: {e}"))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Where file `path` (checked) goes under `dir`, its folder created.
fn place(dir: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let target = path
        .split('/')
        .fold(dir.to_path_buf(), |p, part| p.join(part));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(target)
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let (app, version) = parse_spec(&args.version)?;
    check_target(&args.dir, args.force)?;
    let client = args.target.connect(None).await?;
    let files = match client
        .call(Op::FileSizes {
            app: app.clone(),
            version: Some(version),
        })
        .await?
    {
        Reply::FileSizes { files, .. } => files,
        other => bail!("unexpected reply {other:?}"),
    };
    prepare(&args.dir, files.keys())?;
    let total: u64 = files.values().map(|(_, size)| size).sum();
    let mut progress = Progress::new(format!("exporting {app}@v{version}"), total);
    for (path, (hash, size)) in &files {
        let target = place(&args.dir, path)?;
        let writing = || format!("writing {}", target.display());
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&target).with_context(writing)?);
        let mut sha = Sha256::new();
        let mut offset = 0u64;
        // A file comes in parts, so a version of any size exports with bounded memory.
        while offset < *size {
            let part = match client
                .call(Op::FilePart {
                    app: app.clone(),
                    version,
                    path: path.clone(),
                    offset,
                })
                .await?
            {
                Reply::FilePart(bytes) => bytes.into_vec(),
                other => bail!("unexpected reply {other:?}"),
            };
            if part.is_empty() {
                bail!("{path}: the node sent {offset} of its {size} bytes and no more; run the export again");
            }
            sha.update(&part);
            out.write_all(&part).with_context(writing)?;
            offset += part.len() as u64;
            progress.inc(part.len() as u64, path);
        }
        out.flush().with_context(writing)?;
        let found: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if found != *hash {
            bail!("{path} arrived damaged (its SHA-256 is {found}, the version records {hash}); run the export again");
        }
    }
    progress.finish();
    println!(
        "exported {app}@v{version}: {} files, {total} bytes, into {}",
        files.len(),
        args.dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_an_app_and_a_version() {
        assert_eq!(parse_spec("3").unwrap(), (DEFAULT_APP.to_string(), 3));
        assert_eq!(parse_spec("v3").unwrap(), (DEFAULT_APP.to_string(), 3));
        assert_eq!(parse_spec("web@v12").unwrap(), ("web".to_string(), 12));
        let e = format!("{:#}", parse_spec("web@latest").unwrap_err());
        assert!(e.contains("not VERSION or APP@VERSION"), "{e}");
        assert!(parse_spec("@3").is_err());
    }

    #[test]
    fn a_path_leaving_the_directory_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let paths = ["a.py".to_string(), "../evil.py".to_string()];
        let e = prepare(&out, paths.iter()).unwrap_err().to_string();
        assert!(e.contains("bad file name"), "{e}");
        assert!(!out.exists());
    }
}
