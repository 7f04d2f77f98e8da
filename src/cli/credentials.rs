//! The credentials file `push login` writes: per cluster (its nodes' addresses), the user and
//! secret that the CLI, the REPL and `push lsp` use when no token is given. It lives at
//! `$XDG_CONFIG_HOME/push/credentials` (else `~/.config/push/credentials`), mode 0600, and is
//! refused when others can read it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::server::auth;

/// Every cluster logged in to.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub clusters: Vec<Login>,
}

/// One cluster's login.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    /// The addresses of the cluster's nodes when logging in (and the one given).
    pub nodes: Vec<String>,
    pub user: String,
    pub secret: String,
}

/// Where the credentials file is: `$XDG_CONFIG_HOME/push/credentials`, else
/// `$HOME/.config/push/credentials`; None without either variable.
pub fn path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".config")))
        .map(|config| config.join("push").join("credentials"))
}

impl Credentials {
    /// Reads the file at `path` (empty when there is none). A file others may read is refused.
    pub fn load(path: &Path) -> anyhow::Result<Credentials> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} holds secrets but others may read it (mode {mode:o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
        ron::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid credentials file; delete it and `push login` again",
                path.display()
            )
        })
    }

    /// Writes the file at `path`, created 0600 and replaced in one rename.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())?;
        auth::write_token(path, &text).with_context(|| format!("writing {}", path.display()))
    }

    /// The login of the cluster that has a node at `addr`.
    pub fn find(&self, addr: &str) -> Option<&Login> {
        self.clusters
            .iter()
            .find(|l| l.nodes.iter().any(|n| n == addr))
    }

    /// Records `login`, replacing the logins of any cluster sharing a node with it.
    pub fn put(&mut self, login: Login) {
        self.clusters
            .retain(|l| !l.nodes.iter().any(|n| login.nodes.contains(n)));
        self.clusters.push(login);
    }

    /// Forgets the login of the cluster with a node at `addr`; whether there was one.
    pub fn remove(&mut self, addr: &str) -> bool {
        let before = self.clusters.len();
        self.clusters.retain(|l| !l.nodes.iter().any(|n| n == addr));
        self.clusters.len() != before
    }
}

/// The secret logged in for `addr`, with a description of where it came from.
pub fn lookup(addr: &str) -> anyhow::Result<Option<(String, String)>> {
    let Some(path) = path() else {
        return Ok(None);
    };
    let credentials = Credentials::load(&path)?;
    Ok(credentials.find(addr).map(|login| {
        (
            login.secret.clone(),
            format!(
                "{} (user {}, from `push login`)",
                path.display(),
                login.user
            ),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(nodes: &[&str], user: &str) -> Login {
        Login {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            user: user.into(),
            secret: format!("secret-of-{user}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn saved_owner_only_and_found_by_any_node() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("push").join("credentials");
        let mut c = Credentials::default();
        c.put(login(&["a:1", "a:2"], "alice"));
        c.put(login(&["b:1"], "bob"));
        c.put(login(&["a:2", "a:3"], "carol"));
        c.save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let c = Credentials::load(&path).expect("load");
        assert_eq!(c.find("a:1").map(|l| l.user.as_str()), None, "replaced");
        assert_eq!(c.find("a:3").map(|l| l.user.as_str()), Some("carol"));
        assert_eq!(c.find("b:1").map(|l| l.user.as_str()), Some("bob"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Credentials::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn missing_file_is_empty_and_garbage_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("credentials");
        assert!(Credentials::load(&path).expect("none").clusters.is_empty());
        auth::write_token(&path, "not ron").expect("write");
        let e = format!("{:#}", Credentials::load(&path).unwrap_err());
        assert!(e.contains("push login"), "{e}");
    }
}
