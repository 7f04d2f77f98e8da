//! Reading blob bytes wherever a node keeps them: a small blob inline in the applied state
//! ([`crate::model::CodeStore`], at most `INLINE_MAX` bytes), a larger one in its file
//! ([`super::blobs::BlobStore`], checked against its hash). Every reader of a version's bytes
//! (the workers' sources, `push export`, the diff, environments' wheels) goes through here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use push_protocol::ByteBuf;

use super::blobs::BlobError;
use super::state_machine::SharedState;

impl SharedState {
    /// The bytes of each file of `tree` (path -> blob hash): the inline ones copied under one
    /// short read lock, the others read from their files afterwards (blocking). The error
    /// names the first file that cannot be read.
    pub fn read_tree(
        &self,
        tree: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, ByteBuf>, (String, BlobError)> {
        let mut out = BTreeMap::new();
        let mut files = Vec::new();
        {
            let applied = self.read();
            for (path, hash) in tree {
                match applied.state.code.inline_bytes(&hash) {
                    Some(bytes) => {
                        out.insert(path, bytes.clone());
                    }
                    None => files.push((path, hash)),
                }
            }
        }
        for (path, hash) in files {
            match self.blobs().read(&hash) {
                Ok(bytes) => {
                    out.insert(path, ByteBuf::from(bytes));
                }
                Err(e) => return Err((path, e)),
            }
        }
        Ok(out)
    }

    /// At most `len` bytes of blob `hash` from byte `offset` (blocking).
    pub fn read_blob_part(&self, hash: &str, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
        let inline = self.read().state.code.inline_bytes(hash).map(|bytes| {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = start
                .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                .min(bytes.len());
            bytes[start..end].to_vec()
        });
        match inline {
            Some(part) => Ok(part),
            None => self.blobs().read_part(hash, offset, len),
        }
    }

    /// A file holding the bytes of blob `hash`, for what needs a path (a worker links a
    /// binary file into a version's folder, pip installs a wheel): the blob's file, written
    /// from the state first when the blob is inline (blocking; once per blob and node — the
    /// file is content-addressed and never changes).
    pub fn blob_file(&self, hash: &str) -> Result<PathBuf, BlobError> {
        let store = self.blobs();
        if store.has(hash) {
            return Ok(store.path(hash));
        }
        let inline = self.read().state.code.inline_bytes(hash).cloned();
        match inline {
            Some(bytes) => {
                store.write_from(hash, bytes.len() as u64, &mut &bytes[..])?;
                Ok(store.path(hash))
            }
            None => Err(BlobError::Missing {
                hash: hash.to_string(),
            }),
        }
    }
}
