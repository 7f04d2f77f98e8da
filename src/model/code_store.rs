//! The versioned code store: content-addressed blobs, immutable versions, a HEAD per app.
//!
//! Blobs are addressed by the SHA-256 of their bytes. A version is a tree (path -> blob hash)
//! with its parent, message, author and time. HEAD moves only by commit-with-activate or by
//! activate (deploy, roll forward, roll back), and always to a version that exists.

use std::collections::BTreeMap;

use push_protocol::{ByteBuf, CommitOutcome, ErrorBody, ErrorCode, VersionInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hex SHA-256 of `bytes`: a blob's address.
pub fn blob_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hash over a tree, so identical trees are recognised whatever their history.
pub fn tree_hash(tree: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (path, blob) in tree {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(blob.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize())
}

/// Where a version's tree keeps the wheels of its dependencies: `.wheels/NAME.whl` -> blob.
/// Workers never load these paths as modules; each node installs them as the version's
/// environment (its hash is [`env_hash`]).
pub const WHEELS_DIR: &str = ".wheels/";

/// The wheels of a tree: (file name, blob hash), sorted by name.
pub fn wheels(tree: &BTreeMap<String, String>) -> Vec<(String, String)> {
    tree.range(WHEELS_DIR.to_string()..)
        .take_while(|(path, _)| path.starts_with(WHEELS_DIR))
        .map(|(path, hash)| (path[WHEELS_DIR.len()..].to_string(), hash.clone()))
        .collect()
}

/// A wheel of an environment: its file name and blob hash.
pub type Wheel = (String, String);

/// Whether `path` is one of a tree's wheels rather than app source.
pub fn is_wheel_path(path: &str) -> bool {
    path.starts_with(WHEELS_DIR)
}

/// The environment hash of a tree: SHA-256 over its sorted wheel hashes, or None for a tree
/// without dependencies. Two versions with the same wheels share one environment.
pub fn env_hash(tree: &BTreeMap<String, String>) -> Option<String> {
    let mut hashes: Vec<String> = wheels(tree).into_iter().map(|(_, h)| h).collect();
    if hashes.is_empty() {
        return None;
    }
    hashes.sort();
    let mut hasher = Sha256::new();
    for hash in hashes {
        hasher.update(hash.as_bytes());
        hasher.update([b'\n']);
    }
    Some(hex(&hasher.finalize()))
}

/// Most files one version may hold. A deploy of more is refused before anything is uploaded
/// (CLI) or proposed (leader): every node compiles and keeps every file of HEAD in memory.
pub const MAX_FILES: usize = 20_000;

/// Most bytes one version's text files may hold together (code, templates, data): every
/// worker holds them as strings. Binary files and wheels are not counted (they stay files).
pub const MAX_APP_BYTES: u64 = 32 << 20;

/// Largest single file (a wheel, an image, any bytes) a version may hold: it is uploaded in
/// pieces and kept as a file on every node.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Largest blob kept inline in the replicated state (its bytes in [`CodeStore`] itself, so in
/// the Raft log record, the snapshot's body and every node's memory); a larger one is a file
/// beside the state on every node (`consensus::blobs`). 64 KiB: nearly every source module,
/// template or small asset fits, so a deploy of thousands of them creates no files (creating
/// one costs ~0.4 ms), while the state's memory stays bounded by the app size limits; a
/// 2 MiB piece of a large file is always a file.
pub const INLINE_MAX: u64 = 64 << 10;

/// Whether a blob of `size` bytes stays inline in the state (see [`INLINE_MAX`]).
pub fn is_inline(size: u64) -> bool {
    size <= INLINE_MAX
}

/// Whether a file of a version is given to the workers as source text: a `.py` module
/// always (checked with [`check_source`]), any other file when it is UTF-8 without NUL bytes.
pub fn is_text(path: &str, bytes: &[u8]) -> bool {
    path.ends_with(".py") || check_source(path, bytes).is_ok()
}

/// Why a file or a tree cannot be deployed; each message says what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error(
        "{count} files is more than the {MAX_FILES} one version may hold; deploy only the \
         app's own modules (vendored packages belong in the node's Python environment)"
    )]
    TooMany { count: usize },
    #[error(
        "{path} is not UTF-8 text (invalid byte at offset {offset}); a Python module must be \
         UTF-8 source — re-save it as UTF-8 (a binary file deploys under any name but .py)"
    )]
    NotUtf8 { path: String, offset: usize },
    #[error(
        "{path} contains a NUL byte at offset {offset}; a Python module must be text — \
         re-save it (a binary file deploys under any name but .py)"
    )]
    Nul { path: String, offset: usize },
    #[error(
        "with {path} the app's text files hold {total} bytes, over the {MAX_APP_BYTES}-byte \
         limit of one version; leave large text files out of the app's directory (serve them \
         elsewhere)"
    )]
    TooLarge { path: String, total: u64 },
    #[error("bad path {path:?}: paths are relative and use '/'")]
    NotRelative { path: String },
    #[error("bad path {path:?}: empty, '.' or '..' parts")]
    BadPart { path: String },
}

/// Refuses a tree of more than [`MAX_FILES`] files, saying what to do instead.
pub fn check_file_count(count: usize) -> Result<(), FileError> {
    if count > MAX_FILES {
        return Err(FileError::TooMany { count });
    }
    Ok(())
}

/// Refuses a version whose files hold more than [`MAX_APP_BYTES`] together, naming the file
/// (in path order) that crosses the limit.
pub fn check_app_size<'a>(
    sizes: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), FileError> {
    let mut total = 0;
    for (path, size) in sizes {
        total += size;
        if total > MAX_APP_BYTES {
            return Err(FileError::TooLarge {
                path: path.to_string(),
                total,
            });
        }
    }
    Ok(())
}

/// Checks that a deployed file is source text: UTF-8 without NUL bytes. The error names the
/// file and the offset of the first bad byte.
pub fn check_source(path: &str, bytes: &[u8]) -> Result<(), FileError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(FileError::NotUtf8 {
            path: path.to_string(),
            offset: e.valid_up_to(),
        });
    }
    if let Some(offset) = bytes.iter().position(|b| *b == 0) {
        return Err(FileError::Nul {
            path: path.to_string(),
            offset,
        });
    }
    Ok(())
}

/// Checks a path inside an app: relative, `/`-separated, no `..`, no empty parts.
pub fn check_path(path: &str) -> Result<(), FileError> {
    let path_ = || path.to_string();
    if path.is_empty() || path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err(FileError::NotRelative { path: path_() });
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(FileError::BadPart { path: path_() });
    }
    Ok(())
}

/// One immutable version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Version {
    pub number: u64,
    pub parent: Option<u64>,
    pub message: String,
    pub author: String,
    pub time_ms: u64,
    pub tree: BTreeMap<String, String>,
    pub tree_hash: String,
}

impl Version {
    pub fn info(&self) -> VersionInfo {
        VersionInfo {
            number: self.number,
            parent: self.parent,
            message: self.message.clone(),
            author: self.author.clone(),
            time_ms: self.time_ms,
            files: self.tree.len(),
            tree_hash: self.tree_hash.clone(),
        }
    }
}

/// One app's history.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct App {
    /// `versions[i].number == i + 1`.
    pub versions: Vec<Version>,
    pub head: Option<u64>,
}

impl App {
    pub fn version(&self, number: u64) -> Option<&Version> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.versions.get(index)
    }

    pub fn head_version(&self) -> Option<&Version> {
        self.head.and_then(|n| self.version(n))
    }
}

/// Blobs (hashes and sizes; the bytes of small ones too, larger ones are files beside the
/// state, see `consensus::blobs`) and apps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CodeStore {
    /// Blob bytes held in the state itself: those of at most [`INLINE_MAX`] bytes (formats 1
    /// to 3 kept every blob here; a node moves the larger ones to files when it loads such a
    /// state).
    blobs: BTreeMap<String, ByteBuf>,
    apps: BTreeMap<String, App>,
    /// Every blob the store holds: hash -> size in bytes.
    #[serde(
        default,
        deserialize_with = "push_protocol::format::added_in_4",
        skip_serializing_if = "push_protocol::format::absent_before_4"
    )]
    sizes: BTreeMap<String, u64>,
}

fn invalid(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::Invalid, message)
}

fn not_found(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, message)
}

impl CodeStore {
    /// Records blobs: a small one's bytes stay here, a larger one's go to a file (written by
    /// the state machine); returns how many were new.
    pub fn put_blobs(&mut self, blobs: &[ByteBuf]) -> usize {
        let mut added = 0;
        for blob in blobs {
            let hash = blob_hash(blob);
            if self.record_blob(&hash, blob.len() as u64) {
                added += 1;
                if is_inline(blob.len() as u64) {
                    self.blobs.insert(hash, blob.clone());
                }
            }
        }
        added
    }

    /// Records blob `hash` of `size` bytes; whether it is new.
    pub fn record_blob(&mut self, hash: &str, size: u64) -> bool {
        if self.sizes.contains_key(hash) {
            return false;
        }
        self.sizes.insert(hash.to_string(), size);
        true
    }

    /// Takes the blob bytes held in the state that belong in files (larger than
    /// [`INLINE_MAX`]: formats 1 to 3 held every blob here) for the caller to write and
    /// [`CodeStore::record_blob`]; the small ones stay, their sizes recorded.
    pub fn take_large_blobs(&mut self) -> BTreeMap<String, ByteBuf> {
        let (large, small) = std::mem::take(&mut self.blobs)
            .into_iter()
            .partition(|(_, bytes)| !is_inline(bytes.len() as u64));
        self.blobs = small;
        for (hash, bytes) in &self.blobs {
            self.sizes.entry(hash.clone()).or_insert(bytes.len() as u64);
        }
        large
    }

    /// Whether [`CodeStore::take_large_blobs`] has anything to do: a state of formats 1 to 3.
    pub fn needs_move(&self) -> bool {
        self.blobs
            .iter()
            .any(|(hash, bytes)| !is_inline(bytes.len() as u64) || !self.sizes.contains_key(hash))
    }

    /// Puts blob bytes into the state itself, for a peer of formats 1 to 3 to get them.
    pub fn inline_blob(&mut self, hash: &str, bytes: ByteBuf) {
        self.blobs.insert(hash.to_string(), bytes);
    }

    /// The bytes of blob `hash` when the state holds them (a blob of at most [`INLINE_MAX`]
    /// bytes); None for a blob that is a file, or unknown.
    pub fn inline_bytes(&self, hash: &str) -> Option<&ByteBuf> {
        self.blobs.get(hash)
    }

    /// Records blob `hash` of `size` bytes made of the blobs `pieces` in order (a file too
    /// large for one upload) and forgets the pieces no version uses. Refused when the blob is
    /// small enough to stay inline (it is uploaded whole), a piece is missing or the sizes do
    /// not add up; returns how many blobs were new.
    pub fn join_blob(
        &mut self,
        hash: &str,
        size: u64,
        pieces: &[String],
    ) -> Result<usize, ErrorBody> {
        if self.sizes.contains_key(hash) {
            return Ok(0);
        }
        if is_inline(size) {
            return Err(invalid(format!(
                "blob {hash} of {size} bytes is small enough to upload whole (at most \
                 {INLINE_MAX} bytes): send it with PutBlobs, not in pieces"
            )));
        }
        let mut total = 0u64;
        for piece in pieces {
            match self.sizes.get(piece) {
                Some(s) => total += s,
                None => {
                    return Err(invalid(format!(
                        "piece {piece} of blob {hash} is not in the code store; upload it again"
                    )))
                }
            }
        }
        if total != size || pieces.is_empty() {
            return Err(invalid(format!(
                "the pieces of blob {hash} hold {total} bytes, not {size}; upload it again"
            )));
        }
        let used: std::collections::BTreeSet<&String> = self
            .apps
            .values()
            .flat_map(|a| a.versions.iter().flat_map(|v| v.tree.values()))
            .collect();
        let unused: Vec<String> = pieces
            .iter()
            .filter(|p| !used.contains(p) && *p != hash)
            .cloned()
            .collect();
        for piece in unused {
            self.sizes.remove(&piece);
            self.blobs.remove(&piece);
        }
        self.sizes.insert(hash.to_string(), size);
        Ok(1)
    }

    pub fn has_blob(&self, hash: &str) -> bool {
        self.sizes.contains_key(hash) || self.blobs.contains_key(hash)
    }

    /// The size of blob `hash`, if the store has it.
    pub fn blob_size(&self, hash: &str) -> Option<u64> {
        self.sizes.get(hash).copied()
    }

    /// Every blob the store holds (hash, size), in hash order.
    pub fn blob_sizes(&self) -> impl Iterator<Item = (&String, u64)> {
        self.sizes.iter().map(|(h, s)| (h, *s))
    }

    /// The environment of a tree with dependencies: its hash and its wheels (file name,
    /// blob hash).
    pub fn env_wheels(&self, tree: &BTreeMap<String, String>) -> Option<(String, Vec<Wheel>)> {
        let hash = env_hash(tree)?;
        Some((hash, wheels(tree)))
    }

    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.get(name)
    }

    /// Every environment of every app's versions (sizes left to the node that asks).
    pub fn envs(&self) -> Vec<push_protocol::EnvRow> {
        let mut rows: BTreeMap<(String, String), push_protocol::EnvRow> = BTreeMap::new();
        for (name, app) in &self.apps {
            for version in &app.versions {
                let Some(hash) = env_hash(&version.tree) else {
                    continue;
                };
                let row = rows.entry((name.clone(), hash.clone())).or_insert_with(|| {
                    push_protocol::EnvRow {
                        hash,
                        app: name.clone(),
                        wheels: wheels(&version.tree).into_iter().map(|(n, _)| n).collect(),
                        bytes: None,
                        versions: Vec::new(),
                        head: false,
                    }
                });
                row.versions.push(version.number);
                row.head |= app.head == Some(version.number);
            }
        }
        rows.into_values().collect()
    }

    /// The environments to keep: those of each app's HEAD and of its last `keep` versions.
    pub fn envs_to_keep(&self, keep: usize) -> std::collections::BTreeSet<String> {
        let mut hashes = std::collections::BTreeSet::new();
        for app in self.apps.values() {
            let recent = app.versions.iter().rev().take(keep);
            for version in recent.chain(app.head_version()) {
                hashes.extend(env_hash(&version.tree));
            }
        }
        hashes
    }

    /// Every app's HEAD.
    pub fn heads(&self) -> Vec<(String, u64)> {
        self.apps
            .iter()
            .filter_map(|(name, app)| app.head.map(|h| (name.clone(), h)))
            .collect()
    }

    /// Records a version unless its tree equals HEAD's.
    pub fn commit(
        &mut self,
        app_name: &str,
        tree: &BTreeMap<String, String>,
        message: &str,
        author: &str,
        time_ms: u64,
        activate: bool,
    ) -> Result<CommitOutcome, ErrorBody> {
        if app_name.is_empty() {
            return Err(invalid("the app name is empty".into()));
        }
        if tree.is_empty() {
            return Err(invalid("a version needs at least one file".into()));
        }
        for (path, hash) in tree {
            check_path(path).map_err(|e| invalid(e.to_string()))?;
            if !self.has_blob(hash) {
                return Err(invalid(format!(
                    "{path}: blob {hash} is not in the code store; upload it before committing"
                )));
            }
        }
        let hash = tree_hash(tree);
        let app = self.apps.entry(app_name.to_string()).or_default();
        if let Some(head) = app.head_version() {
            if head.tree_hash == hash {
                return Ok(CommitOutcome::Unchanged { head: head.number });
            }
        }
        let number = app.versions.len() as u64 + 1;
        app.versions.push(Version {
            number,
            parent: app.head,
            message: message.to_string(),
            author: author.to_string(),
            time_ms,
            tree: tree.clone(),
            tree_hash: hash,
        });
        if activate {
            app.head = Some(number);
        }
        Ok(CommitOutcome::Created {
            version: number,
            activated: activate,
        })
    }

    /// Moves HEAD to `version`, or to HEAD's parent (a rollback) when None.
    pub fn activate(
        &mut self,
        app_name: &str,
        version: Option<u64>,
    ) -> Result<(Option<u64>, u64), ErrorBody> {
        let Some(app) = self.apps.get_mut(app_name) else {
            return Err(not_found(format!(
                "no app named {app_name:?}; deploy it first with `push deploy DIR`"
            )));
        };
        let from = app.head;
        let to = match version {
            Some(v) => v,
            None => match app.head_version().and_then(|h| h.parent) {
                Some(parent) => parent,
                None => {
                    return Err(invalid(match from {
                        Some(h) => format!("v{h} has no parent: there is nothing to roll back to"),
                        None => "no version is active: there is nothing to roll back".into(),
                    }))
                }
            },
        };
        if app.version(to).is_none() {
            return Err(not_found(format!(
                "{app_name} has no version {to} (it has v1..v{}); see `push versions`",
                app.versions.len()
            )));
        }
        app.head = Some(to);
        Ok((from, to))
    }

    /// The tree of a version (HEAD when None): its number and path -> blob hash. The bytes
    /// are read from the node's blob files.
    pub fn tree(
        &self,
        app_name: &str,
        version: Option<u64>,
    ) -> Result<(u64, BTreeMap<String, String>), ErrorBody> {
        let app = self
            .apps
            .get(app_name)
            .ok_or_else(|| {
                not_found(format!(
                    "no app named {app_name:?}; deploy it first with `push deploy DIR --app {app_name}`"
                ))
            })?;
        let number = match version.or(app.head) {
            Some(n) => n,
            None => return Err(not_found(format!("{app_name} has no active version"))),
        };
        let v = app.version(number).ok_or_else(|| {
            let has = match app.versions.len() {
                0 => "it has no versions yet".to_string(),
                1 => "it has v1".to_string(),
                n => format!("it has v1..v{n}"),
            };
            not_found(format!(
                "{app_name} has no version {number} ({has}); see `push versions --app {app_name}`"
            ))
        })?;
        Ok((number, v.tree.clone()))
    }
}

/// A unified diff between the files `a` of version `from` and `b` of version `to`.
pub fn diff(
    from: u64,
    a: &BTreeMap<String, ByteBuf>,
    to: u64,
    b: &BTreeMap<String, ByteBuf>,
) -> String {
    let mut out = String::new();
    let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for path in paths {
        let (old, new) = (a.get(path), b.get(path));
        if old == new {
            continue;
        }
        let binary = |x: Option<&ByteBuf>| x.is_some_and(|x| check_source(path, x).is_err());
        let old_name = if old.is_some() {
            format!("v{from}/{path}")
        } else {
            "/dev/null".into()
        };
        let new_name = if new.is_some() {
            format!("v{to}/{path}")
        } else {
            "/dev/null".into()
        };
        if binary(old) || binary(new) {
            out.push_str(&format!("Binary files {old_name} and {new_name} differ\n"));
            continue;
        }
        let old = old.map(|x| String::from_utf8_lossy(x)).unwrap_or_default();
        let new = new.map(|x| String::from_utf8_lossy(x)).unwrap_or_default();
        let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&old_name, &new_name)
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
#[path = "code_store_tests.rs"]
mod tests;
