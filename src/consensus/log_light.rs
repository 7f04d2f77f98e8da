//! Raft log entries kept without their large blobs' bytes: a `PutBlobs` entry's blobs larger
//! than `INLINE_MAX` are written as blob files (synced) before the log record that names them
//! by hash, and put back from the files when the entry is read for replication or apply
//! ([`super::log_store`]). Small blobs stay in the record, as they stay in the state.

use std::collections::BTreeMap;
use std::io;

use openraft::{Entry, EntryPayload};

use super::blobs::{self, BlobStore};
use super::TypeConfig;
use crate::model::code_store::is_inline;
use crate::model::CommandOp;

/// Whether `entry` carries blob bytes that are files (a `PutBlobs` with a large blob).
pub(super) fn carries_blobs(entry: &Entry<TypeConfig>) -> bool {
    matches!(&entry.payload, EntryPayload::Normal(c)
        if matches!(&c.op, CommandOp::PutBlobs { blobs: b } if blobs::large(b).next().is_some()))
}

/// Per light entry, its index and the hashes of its blobs, in order.
pub(super) type Refs = Vec<(u64, Vec<String>)>;

/// Writes the large blobs of `entries`' `PutBlobs` to `store` (synced) and returns the entries
/// without those bytes (the small ones kept), with the hashes to read them back by: (light
/// entries, refs; empty when no entry had a large blob).
pub(super) fn lighten(
    store: &BlobStore,
    entries: Vec<Entry<TypeConfig>>,
) -> io::Result<(Vec<Entry<TypeConfig>>, Refs)> {
    let mut refs = Vec::new();
    let mut out = Vec::with_capacity(entries.len());
    for mut entry in entries {
        if let EntryPayload::Normal(command) = &mut entry.payload {
            if let CommandOp::PutBlobs { blobs: all } = &mut command.op {
                if blobs::large(all).next().is_some() {
                    let hashes = store
                        .write_all(blobs::large(all))
                        .map_err(io::Error::other)?;
                    all.retain(|b| is_inline(b.len() as u64));
                    refs.push((entry.log_id.index, hashes));
                }
            }
        }
        out.push(entry);
    }
    Ok((out, refs))
}

/// Puts the large blobs' bytes back into the light entries among `entries` (`refs` by index),
/// after the small ones the entries kept (the order of a `PutBlobs` means nothing).
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
                for hash in hashes {
                    let bytes = store.read(hash).map_err(io::Error::other)?;
                    blobs.push(push_protocol::ByteBuf::from(bytes));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};
    use push_protocol::ByteBuf;

    use super::*;
    use crate::model::code_store::{blob_hash, INLINE_MAX};
    use crate::model::Command;

    fn put(index: u64, blobs: Vec<Vec<u8>>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command {
                time_ms: 1,
                op: CommandOp::PutBlobs {
                    blobs: blobs.into_iter().map(ByteBuf::from).collect(),
                },
            }),
        }
    }

    fn blobs_of(entry: &Entry<TypeConfig>) -> Vec<Vec<u8>> {
        match &entry.payload {
            EntryPayload::Normal(Command {
                op: CommandOp::PutBlobs { blobs },
                ..
            }) => blobs.iter().map(|b| b.to_vec()).collect(),
            _ => panic!("not a PutBlobs"),
        }
    }

    /// Only large blobs leave the record (as files); small ones stay in it and no file is made
    /// for them; reading back gives every blob again.
    #[test]
    fn only_large_blobs_leave_the_log_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (small, large) = (b"x = 1\n".to_vec(), vec![3u8; INLINE_MAX as usize + 1]);
        let entries = vec![
            put(1, vec![small.clone()]),
            put(2, vec![small.clone(), large.clone()]),
        ];
        assert!(!carries_blobs(&entries[0]) && carries_blobs(&entries[1]));
        let (mut light, refs) = lighten(&store, entries).unwrap();
        assert_eq!(refs, vec![(2, vec![blob_hash(&large)])]);
        assert_eq!(blobs_of(&light[0]), vec![small.clone()]);
        assert_eq!(blobs_of(&light[1]), vec![small.clone()]);
        assert!(store.has(&blob_hash(&large)) && !store.has(&blob_hash(&small)));
        rehydrate(&store, &mut light, &refs.into_iter().collect()).unwrap();
        assert_eq!(blobs_of(&light[1]), vec![small, large]);
    }
}
