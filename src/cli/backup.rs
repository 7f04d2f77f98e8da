//! `push backup FILE` and `push restore FILE --data DIR`: a consistent copy of the replicated
//! state into a file (streamed, checked, progress on stderr), and a new cluster's first node
//! seeded from one. Neither leaves a half-written file or data dir behind.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
use push_protocol::{BackupPart, Op, Reply};

use super::progress::Progress;
use super::target::Target;
use crate::consensus::backup::{self, BackupHeader, BackupWriter};
use crate::consensus::blobs::BlobStore;
use crate::consensus::{blob_section, state_machine};
use crate::server::auth;

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// File to write (must not exist yet)
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// A file `push backup` wrote
    pub file: PathBuf,
    /// Data directory of the new cluster's first node (must be new or empty)
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Id of that node
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// Address that node will listen on (give `push node` the same --listen)
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: String,
    /// Keep the cluster token this command would use (--token, --token-file, $PUSH_TOKEN or
    /// ./.push/token) instead of making a new one
    #[arg(long)]
    pub keep_token: bool,
    #[command(flatten)]
    pub target: Target,
}

/// A path beside `path` named after it, for writing before a rename.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// Removes a partial file or directory unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let file = &args.file;
    if file.exists() {
        bail!(
            "{} already exists; name a new file (a backup never overwrites one)",
            file.display()
        );
    }
    let client = args.target.connect(None).await?;
    let partial = beside(file, "partial");
    let mut cleanup = Cleanup(Some(partial.clone()));
    let mut replies = client.call_stream(Op::Backup).await?;
    let mut writer = None;
    let mut progress = None;
    let mut end = None;
    while let Some(outcome) = replies.recv().await {
        let part = match outcome {
            Ok(Reply::Backup(part)) => part,
            Ok(other) => bail!("unexpected reply {other:?}"),
            Err(body) => bail!("the backup failed: {body}"),
        };
        match part {
            BackupPart::Begin {
                format,
                index,
                term,
                bytes,
            } => {
                let out = std::fs::File::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?;
                let header = BackupHeader {
                    format,
                    index,
                    term,
                    bytes,
                };
                eprintln!("backup of log index {index} (term {term}): {bytes} bytes of state");
                writer = Some(BackupWriter::new(BufWriter::new(out), header)?);
                progress = Some(Progress::new("backup bytes", bytes));
            }
            BackupPart::Chunk(bytes) => {
                let Some(w) = writer.as_mut() else {
                    bail!("the node sent state before saying what it sends");
                };
                w.chunk(&bytes)
                    .with_context(|| format!("writing {}", partial.display()))?;
                if let Some(p) = progress.as_mut() {
                    p.inc(bytes.len() as u64, "");
                }
            }
            BackupPart::End { sha256 } => end = Some(sha256),
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    let (Some(writer), Some(sha256)) = (writer, end) else {
        bail!("the connection closed before the backup was complete; nothing was written");
    };
    let out = writer.finish(&sha256)?;
    let out = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", partial.display(), e.error()))?;
    out.sync_all()?;
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    cleanup.0 = None;
    println!("wrote {} (SHA-256 of the state {sha256})", file.display());
    Ok(())
}

/// Whether `dir` may receive a restore: absent, or an empty directory.
fn check_target(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; restore into a new or empty directory (nothing was written)",
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// What a restore wrote.
pub struct Seeded {
    pub header: BackupHeader,
    pub maps: usize,
    pub apps: usize,
}

/// Checks the backup `file` and seeds `dir` (new or empty) with it as node `id` at `listen`
/// of a new cluster whose token is `token`; writes beside `dir` and renames into place.
pub fn seed_data_dir(
    file: &Path,
    dir: &Path,
    id: u64,
    listen: &str,
    token: &str,
) -> anyhow::Result<Seeded> {
    check_target(dir)?;
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let (header, body) = backup::read_backup(&mut BufReader::new(input))
        .with_context(|| format!("reading {}", file.display()))?;
    let (mut restored, blobs) = backup::decode(&header, &body)?;
    // The registry's liveness is the old cluster's: the new one hears from its own nodes.
    restored.state.nodes.forget_liveness();

    let tmp = beside(dir, "restoring");
    if tmp.exists() {
        // Left by a restore that was killed: ours by name, never a data dir.
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let mut cleanup = Cleanup(Some(tmp.clone()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if !blobs.is_empty() {
        // The blob files go where the node keeps them, each checked against its hash.
        let store = BlobStore::open(&tmp.join("state").join(state_machine::BLOBS))
            .context("creating the blob folder")?;
        let offset = body.len() - blobs.len();
        blob_section::install(&mut std::io::Cursor::new(blobs), 0, &store).map_err(|e| {
            anyhow::anyhow!(
                "the backup's blob files (from byte {offset} of its state bytes) are damaged: {e}; pass an undamaged backup"
            )
        })?;
    }
    drop(body);
    let last = LogId::new(CommittedLeaderId::new(0, id), restored.index);
    let membership = Membership::new(
        vec![BTreeSet::from([id])],
        BTreeMap::from([(id, BasicNode::new(listen))]),
    );
    let (maps, apps) = (
        restored.state.kv.maps().count(),
        restored.state.code.heads().len(),
    );
    state_machine::seed(
        &tmp.join("state"),
        last,
        StoredMembership::new(Some(last), membership),
        restored.state,
    )
    .context("writing the snapshot")?;
    std::fs::write(tmp.join("id"), format!("{id}\n"))?;
    auth::write_token(&tmp.join("token"), token).context("writing the token")?;
    std::fs::File::open(&tmp)?.sync_all()?;
    // Still new or empty (rename replaces an empty directory).
    check_target(dir)?;
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))?;
    cleanup.0 = None;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(Seeded { header, maps, apps })
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let dir = &args.data;
    check_target(dir)?;
    let token = if args.keep_token {
        args.target
            .token()
            .context("--keep-token: no token to keep")?
    } else {
        auth::generate()
    };
    let seeded = seed_data_dir(&args.file, dir, args.id, &args.listen, &token)?;
    println!(
        "restored log index {} (term {}) of the backup: {} kv maps, {} apps",
        seeded.header.index, seeded.header.term, seeded.maps, seeded.apps
    );
    if args.keep_token {
        println!(
            "kept the cluster token; it is in {}",
            dir.join("token").display()
        );
    } else {
        println!(
            "a new cluster token is in {} (pass it to joining nodes with --token-file)",
            dir.join("token").display()
        );
    }
    println!(
        "start the new cluster's first node: push node --id {} --listen {} --data {}",
        args.id,
        args.listen,
        dir.display()
    );
    Ok(())
}
