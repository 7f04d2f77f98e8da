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

/// Writes a token file readable only by its owner.
pub fn write_token(path: &Path, token: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{token}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
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
}
