//! The code store from the shell: `push deploy`, `versions`, `rollback`, `diff`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
pub use push_protocol::DEFAULT_APP;
use push_protocol::{CommitOutcome, Op, Reply, MAX_BLOB_BATCH};

use super::progress::Progress;
use super::target::Target;
use crate::model::code_store::{
    blob_hash, check_app_size, check_file_count, check_path, check_source, env_hash, is_text,
    is_wheel_path, MAX_FILE_BYTES,
};

/// Upload batches hold at most this many files: each is a file on every node's disk, written
/// before the batch is acknowledged (about 0.4 ms apiece on a small VM), so a batch of
/// thousands of tiny modules would outlast a request's timeout.
const BATCH_FILES: usize = 500;
/// Upload batches stay under this many bytes.
const BATCH_BYTES: usize = 1 << 20;
/// A file larger than this goes up in pieces of this size, joined on the cluster.
const PIECE: usize = 2 << 20;

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// Directory holding the app's .py modules (and an optional push.ron manifest)
    pub dir: PathBuf,
    /// Version message
    #[arg(short, long, default_value = "")]
    pub message: String,
    /// Store the version without making it HEAD
    #[arg(long)]
    pub no_activate: bool,
    /// App name
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
    /// Resolve the app's dependencies (requirements.txt or pyproject.toml) from the wheels
    /// in DIR only, never an index (air-gapped machines)
    #[arg(long, value_name = "DIR")]
    pub wheels: Option<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct VersionsArgs {
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// Version to make HEAD (a number, with or without a leading 'v') [default: HEAD's parent]
    pub version: Option<String>,
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Older version
    pub from: String,
    /// Newer version
    pub to: String,
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
    #[command(flatten)]
    pub target: Target,
}

/// Parses `7` or `v7`.
pub fn parse_version(text: &str) -> anyhow::Result<u64> {
    text.trim_start_matches('v')
        .parse()
        .with_context(|| format!("{text:?} is not a version number (like 3 or v3)"))
}

/// The deployable files under `dir`: modules, `push.ron` and every other file (templates,
/// static files, data, any bytes), skipping hidden files and folders, `__pycache__` and
/// compiled `.pyc` files. Paths are relative and `/`-separated, sorted.
pub fn collect_files(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in
            std::fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !name.starts_with('.') && name != "__pycache__" {
                    stack.push(path);
                }
                continue;
            }
            if name.starts_with('.') || name.ends_with(".pyc") || name.ends_with(".pyo") {
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .context("walking the app directory")?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            check_path(&rel).map_err(|e| anyhow::anyhow!(e))?;
            let size = entry.metadata()?.len();
            check_file_size(&rel, size)?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if rel.ends_with(".py") {
                check_source(&rel, &bytes).map_err(|e| anyhow::anyhow!("not deployed: {e}"))?;
            }
            files.insert(rel, bytes);
        }
        check_file_count(files.len()).map_err(|e| anyhow::anyhow!("not deployed: {e}"))?;
    }
    let text = files.iter().filter(|(p, b)| is_text(p, b));
    check_app_size(text.map(|(p, b)| (p.as_str(), b.len() as u64)))
        .map_err(|e| anyhow::anyhow!("not deployed: {e}"))?;
    if !files.keys().any(|p| p.ends_with(".py")) {
        bail!(
            "no .py files in {}; point `push deploy` at the app's directory",
            dir.display()
        );
    }
    Ok(files)
}

/// Refuses a file over [`MAX_FILE_BYTES`], naming it and the limit.
fn check_file_size(path: &str, size: u64) -> anyhow::Result<()> {
    if size > MAX_FILE_BYTES {
        bail!(
            "not deployed: {path} is {size} bytes; the limit for one file is {MAX_FILE_BYTES} \
             bytes ({} MiB) — leave it out of the app's directory",
            MAX_FILE_BYTES >> 20
        );
    }
    Ok(())
}

fn author() -> String {
    std::env::var("PUSH_AUTHOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    println!("{}", deploy_dir(&args).await?);
    Ok(())
}

/// Uploads what the code store lacks, commits, and returns the one-line summary.
pub async fn deploy_dir(args: &DeployArgs) -> anyhow::Result<String> {
    let mut files = collect_files(&args.dir)?;
    let client = args.target.connect(None).await?;
    let wheel_count = super::deps::add_wheels(
        &args.dir,
        args.wheels.as_deref(),
        &args.target,
        &client,
        &mut files,
    )
    .await?;
    let tree: BTreeMap<String, String> = files
        .iter()
        .map(|(p, b)| (p.clone(), blob_hash(b)))
        .collect();
    for (path, bytes) in &files {
        check_file_size(path, bytes.len() as u64)?;
    }
    let hashes: Vec<String> = tree.values().cloned().collect();
    let missing = match client.call(Op::MissingBlobs { hashes }).await? {
        Reply::Missing(m) => m,
        other => bail!("unexpected reply {other:?}"),
    };
    let missing: std::collections::BTreeSet<String> = missing.into_iter().collect();
    let uploads: Vec<&Vec<u8>> = {
        let mut seen = std::collections::BTreeSet::new();
        files
            .values()
            .filter(|b| {
                let h = blob_hash(b);
                missing.contains(&h) && seen.insert(h)
            })
            .collect()
    };
    if wheel_count > 0 {
        let missing_wheels = files
            .iter()
            .filter(|(p, b)| is_wheel_path(p) && missing.contains(&blob_hash(b)))
            .map(|(_, b)| b.len())
            .collect::<Vec<_>>();
        eprintln!(
            "dependencies: {wheel_count} wheels, environment {}; uploading {} ({} KB), {} already on the cluster",
            env_hash(&tree).map_or(String::new(), |h| h[..12].to_string()),
            missing_wheels.len(),
            missing_wheels.iter().sum::<usize>() / 1024,
            wheel_count - missing_wheels.len()
        );
    }
    upload(&client, &uploads).await?;
    let reply = client
        .call(Op::Commit {
            app: args.app.clone(),
            tree,
            message: args.message.clone(),
            author: author(),
            activate: !args.no_activate,
        })
        .await?;
    Ok(match reply {
        Reply::Committed(CommitOutcome::Created { version, activated }) => {
            let head = if activated {
                format!("; HEAD is now v{version}")
            } else {
                format!("; HEAD unchanged (activate with `push rollback {version}`)")
            };
            format!(
                "deployed {}@v{version} ({} files, {} uploaded){head}",
                args.app,
                files.len(),
                missing.len()
            )
        }
        Reply::Committed(CommitOutcome::Unchanged { head }) => {
            format!(
                "nothing to deploy: the tree is identical to HEAD ({}@v{head})",
                args.app
            )
        }
        other => bail!("unexpected reply {other:?}"),
    })
}

/// Uploads `blobs`: small ones batched, each larger one in pieces (only the pieces the cluster
/// lacks, so an interrupted upload resumes) joined on the cluster. Progress in bytes.
async fn upload(client: &push_protocol::Client, blobs: &[&Vec<u8>]) -> anyhow::Result<()> {
    let total: u64 = blobs.iter().map(|b| b.len() as u64).sum();
    if blobs.is_empty() {
        return Ok(());
    }
    let mut progress = Progress::new("uploading (bytes)", total);
    let mut batch: Vec<push_protocol::ByteBuf> = Vec::new();
    let mut batch_bytes = 0;
    let (small, large): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
        blobs.iter().partition(|b| b.len() <= PIECE);
    for blob in small {
        if !batch.is_empty()
            && (batch_bytes + blob.len() > MAX_BLOB_BATCH.min(BATCH_BYTES)
                || batch.len() >= BATCH_FILES)
        {
            put_batch(client, &mut batch, &mut batch_bytes, &mut progress).await?;
        }
        batch_bytes += blob.len();
        batch.push(push_protocol::ByteBuf::from(blob.to_vec()));
    }
    if !batch.is_empty() {
        put_batch(client, &mut batch, &mut batch_bytes, &mut progress).await?;
    }
    for blob in large {
        let pieces: Vec<&[u8]> = blob.chunks(PIECE).collect();
        let hashes: Vec<String> = pieces.iter().map(|p| blob_hash(p)).collect();
        let lacking: std::collections::BTreeSet<String> = match client
            .call(Op::MissingBlobs {
                hashes: hashes.clone(),
            })
            .await?
        {
            Reply::Missing(m) => m.into_iter().collect(),
            other => bail!("unexpected reply {other:?}"),
        };
        for (piece, hash) in pieces.iter().zip(&hashes) {
            if lacking.contains(hash) {
                batch_bytes = piece.len();
                batch.push(push_protocol::ByteBuf::from(piece.to_vec()));
                put_batch(client, &mut batch, &mut batch_bytes, &mut progress).await?;
            } else {
                progress.inc(piece.len() as u64, "already there");
            }
        }
        client
            .call(Op::JoinBlob {
                hash: blob_hash(blob),
                size: blob.len() as u64,
                pieces: hashes,
            })
            .await
            .context("joining the pieces of a large file")?;
    }
    progress.finish();
    Ok(())
}

/// Uploads the blobs gathered in `batch` (`bytes` of them) in one request and empties it.
async fn put_batch(
    client: &push_protocol::Client,
    batch: &mut Vec<push_protocol::ByteBuf>,
    bytes: &mut usize,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    client
        .call(Op::PutBlobs {
            blobs: std::mem::take(batch),
        })
        .await
        .context("uploading the app's files")?;
    progress.inc(*bytes as u64, "");
    *bytes = 0;
    Ok(())
}

pub async fn versions(args: VersionsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(None).await?;
    let (head, versions) = match client
        .call(Op::Versions {
            app: args.app.clone(),
        })
        .await?
    {
        Reply::Versions { head, versions } => (head, versions),
        other => bail!("unexpected reply {other:?}"),
    };
    if versions.is_empty() {
        println!(
            "{} has no versions yet; deploy with `push deploy DIR`",
            args.app
        );
        return Ok(());
    }
    for v in versions.iter().rev() {
        let mark = if Some(v.number) == head { "*" } else { " " };
        println!(
            "{mark} v{:<4} {}  {:<12} {:>3} files  {}",
            v.number,
            push_repl::views::format_time(v.time_ms),
            v.author,
            v.files,
            if v.message.is_empty() {
                "(no message)"
            } else {
                &v.message
            }
        );
    }
    Ok(())
}

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let version = args.version.as_deref().map(parse_version).transpose()?;
    let client = args.target.connect(None).await?;
    match client
        .call(Op::Activate {
            app: args.app.clone(),
            version,
        })
        .await?
    {
        Reply::Activated { from, to } => {
            let from = from.map_or("none".to_string(), |f| format!("v{f}"));
            println!("{}: HEAD moved from {from} to v{to}", args.app);
            Ok(())
        }
        other => bail!("unexpected reply {other:?}"),
    }
}

pub async fn diff(args: DiffArgs) -> anyhow::Result<()> {
    let (from, to) = (parse_version(&args.from)?, parse_version(&args.to)?);
    let client = args.target.connect(None).await?;
    match client
        .call(Op::Diff {
            app: args.app.clone(),
            from,
            to,
        })
        .await?
    {
        Reply::Diff(text) if text.is_empty() => {
            println!("v{from} and v{to} have identical files");
            Ok(())
        }
        Reply::Diff(text) => {
            print!("{text}");
            Ok(())
        }
        other => bail!("unexpected reply {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(push_repl::views::format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(
            push_repl::views::format_time(1_795_305_600_000),
            "2026-11-22 00:00:00Z"
        );
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("v7").unwrap(), 7);
        assert_eq!(parse_version("7").unwrap(), 7);
        assert!(parse_version("seven").is_err());
    }
}
