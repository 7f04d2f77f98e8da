//! Sending a snapshot to a peer of an older format: the state bytes are re-encoded in the
//! format the peer's welcome chose (fields it does not know left out, `absent_before_N`), into
//! an unlinked temporary file that openraft's chunked transfer then reads like any snapshot.
//! A peer of this node's own format gets the snapshot file's state bytes as they are; a peer
//! of a format before blob files gets the blobs inside the state, as it keeps them.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::Snapshot;

use super::snapshot_file::{read_state, section_of, write_state, SnapshotFile, STREAMED_SINCE};
use super::TypeConfig;

/// Names the temporary files of this process apart.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// `snapshot` with its state bytes in format `version` (older than this node's).
pub async fn for_format(
    snapshot: Snapshot<TypeConfig>,
    version: u32,
) -> io::Result<Snapshot<TypeConfig>> {
    let meta = snapshot.meta;
    let (mut file, base) = snapshot.snapshot.into_std().await;
    let encoded = tokio::task::spawn_blocking(move || -> io::Result<std::fs::File> {
        let (mut applier, from) = read_state(&mut file, base, "the snapshot to send")?;
        if from >= STREAMED_SINCE {
            // A peer of a format before blob files keeps blobs in its state.
            let at = section_of(&mut file, base)?;
            super::blob_section::inline(&mut file, at, &mut applier.state)?;
        }
        let path = std::env::temp_dir().join(format!(
            "push-snapshot-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut out = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Unlinked at once: the open file is all there is, gone when it closes (or on a crash).
        std::fs::remove_file(&path)?;
        write_state(&mut out, version, &applier, None)?;
        Ok(out)
    })
    .await
    .map_err(io::Error::other)??;
    let data = SnapshotFile::new(tokio::fs::File::from_std(encoded), 0).await?;
    tracing::info!(
        format = version,
        "sending a snapshot re-encoded for a peer of an older format"
    );
    Ok(Snapshot {
        meta,
        snapshot: Box::new(data),
    })
}
