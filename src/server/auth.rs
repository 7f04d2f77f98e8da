//! The cluster token: generation, storage and constant-time comparison.

use std::path::Path;

/// A fresh random token (32 bytes, hex).
pub fn generate() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without leaking, through timing, how long a matching prefix was.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for (i, expected_byte) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ expected_byte;
    }
    diff == 0
}

/// Reads a token file, trimming whitespace.
pub fn read_token(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Writes a token file readable only by its owner. The token goes into a new file created
/// 0600 from the start (never world-readable, not even for a moment), which then replaces
/// `path` in one rename: an existing file, whatever its mode and whoever holds it open, never
/// sees the new token, and a crash leaves the old file or the new one, never half a token.
pub fn write_token(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let new = path.with_file_name(name);
    // A leftover from a crash (removing a symlink removes the link, not what it points to).
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&new).and_then(|mut file| {
        file.write_all(format!("{token}\n").as_bytes())?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&new, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&new);
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison() {
        let t = generate();
        assert_eq!(t.len(), 64);
        assert!(token_matches(&t, &t));
        assert!(!token_matches("", &t));
        assert!(!token_matches(&t[..63], &t));
        assert!(!token_matches(&format!("{t}0"), &t));
        assert!(!token_matches(&t.replace(&t[..1], "z"), &t));
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    /// The files in `dir`, sorted.
    #[cfg(unix)]
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[cfg(unix)]
    #[test]
    fn a_new_token_file_is_owner_only() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        let token = generate();
        write_token(&path, &token).expect("write");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_token(&path).expect("read"), token);
        assert_eq!(listing(dir.path()), ["token"], "nothing left beside it");
    }

    /// Restricting an existing file in place (chmod, then write) leaves the token readable
    /// through any descriptor opened while the file was world-readable.
    #[cfg(unix)]
    #[test]
    fn an_existing_world_readable_token_file_never_shows_the_new_token() {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "old\n").expect("old");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut reader = std::fs::File::open(&path).expect("another user's reader");
        // A leftover from an interrupted write is replaced, not trusted.
        std::fs::write(dir.path().join("token.new"), "stale").expect("leftover");
        let token = generate();
        write_token(&path, &token).expect("write");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_token(&path).expect("read"), token);
        let mut seen = String::new();
        reader.read_to_string(&mut seen).expect("read old");
        assert_eq!(seen, "old\n", "the open reader must not see the new token");
        assert_eq!(listing(dir.path()), ["token"], "nothing left beside it");
    }
}
