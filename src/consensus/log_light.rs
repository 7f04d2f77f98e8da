//! Raft log entries kept without their blob bytes: a `PutBlobs` entry's blobs are written as
//! blob files (synced) before the log record that names them by hash, and put back from the
//! files when the entry is read for replication or apply ([`super::log_store`]).

use std::collections::BTreeMap;
use std::io;

use openraft::{Entry, EntryPayload};

use super::blobs::BlobStore;
use super::TypeConfig;
use crate::model::CommandOp;

/// Whether `entry` carries blob bytes (a `PutBlobs`).
pub(super) fn carries_blobs(entry: &Entry<TypeConfig>) -> bool {
    matches!(&entry.payload, EntryPayload::Normal(c) if matches!(c.op, CommandOp::PutBlobs { .. }))
}

/// Per light entry, its index and the hashes of its blobs, in order.
pub(super) type Refs = Vec<(u64, Vec<String>)>;

/// Writes the blobs of `entries`' `PutBlobs` to `store` (synced) and returns the entries
/// without those bytes, with the hashes to read them back by: (light entries, refs).
pub(super) fn lighten(
    store: &BlobStore,
    entries: Vec<Entry<TypeConfig>>,
) -> io::Result<(Vec<Entry<TypeConfig>>, Refs)> {
    let mut refs = Vec::new();
    let mut out = Vec::with_capacity(entries.len());
    for mut entry in entries {
        if let EntryPayload::Normal(command) = &mut entry.payload {
            if let CommandOp::PutBlobs { blobs } = &mut command.op {
                let hashes = store.write_all(blobs).map_err(io::Error::other)?;
                blobs.clear();
                refs.push((entry.log_id.index, hashes));
            }
        }
        out.push(entry);
    }
    Ok((out, refs))
}

/// Puts the blob bytes back into the light entries among `entries` (`refs` by index).
pub(super) fn rehydrate(
    store: &BlobStore,
    entries: &mut [Entry<TypeConfig>],
    refs: &BTreeMap<u64, Vec<String>>,
) -> io::Result<()> {
    for entry in entries {
        let Some(hashes) = refs.get(&entry.log_id.index) else {
            continue;
        };
        if let EntryPayload::Normal(command) = &mut entry.payload {
            if let CommandOp::PutBlobs { blobs } = &mut command.op {
                blobs.clear();
                for hash in hashes {
                    let bytes = store.read(hash).map_err(io::Error::other)?;
                    blobs.push(push_protocol::ByteBuf::from(bytes));
                }
            }
        }
    }
    Ok(())
}
