//! `push tls-init`: a private CA and one node certificate, enough to run a cluster with TLS;
//! with `--ca-dir`, a certificate for another host signed by a CA made earlier.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, Issuer, KeyPair};

#[derive(clap::Args, Debug)]
pub struct TlsInitArgs {
    /// Directory to write ca.pem, ca-key.pem, node.pem and node-key.pem into
    pub dir: PathBuf,
    /// A host name or IP the nodes are reached by; repeat for several (localhost and
    /// 127.0.0.1 are always included)
    #[arg(long = "host", value_name = "NAME|IP")]
    pub hosts: Vec<String>,
    /// Sign the node certificate with the CA already in this directory (its ca.pem and
    /// ca-key.pem, from an earlier `push tls-init`) instead of making a new CA
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

/// The files `tls-init` writes, and whether each is a secret (a private key).
const FILES: [(&str, bool); 4] = [
    ("ca.pem", false),
    ("ca-key.pem", true),
    ("node.pem", false),
    ("node-key.pem", true),
];

fn exists_error(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} exists; pick an empty directory so no key is overwritten",
        path.display()
    )
}

/// Creates `path` (never overwriting, never through a symlink) and writes `text` to it. A
/// secret is created readable only by its owner (0600) from the start, so there is no moment
/// where others can read it.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists_error(path)),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (--ca-dir takes the directory an earlier `push tls-init` wrote)",
            path.display()
        )
    })
}

/// The node certificate's parameters for `hosts` plus localhost and 127.0.0.1.
fn node_params(hosts: Vec<String>) -> anyhow::Result<(CertificateParams, Vec<String>)> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for h in hosts {
        if !names.contains(&h) {
            names.push(h);
        }
    }
    let mut params = CertificateParams::new(names.clone())
        .context("a --host is neither a DNS name nor an IP address")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Push node");
    Ok((params, names))
}

pub fn run(args: TlsInitArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    // Refuse before writing anything, so a half-used directory is left as it was (a symlink,
    // even a dangling one, counts: a key is never written through it).
    // Signing with an existing CA writes no CA key, and no CA certificate into its own dir.
    let kept = |name: &str| match &args.ca_dir {
        Some(ca_dir) => {
            name == "ca-key.pem" || (name == "ca.pem" && args.dir.join(name) == ca_dir.join(name))
        }
        None => false,
    };
    if let Some(path) = FILES
        .iter()
        .filter(|(name, _)| !kept(name))
        .map(|(name, _)| args.dir.join(name))
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(exists_error(&path));
    }
    if let Some(ca_dir) = &args.ca_dir {
        return sign_with(ca_dir, &args.dir, args.hosts);
    }
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Push cluster CA");
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let (params, names) = node_params(args.hosts)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    let dir = &args.dir;
    write(&dir.join("ca.pem"), &ca.pem(), false)?;
    write(&dir.join("ca-key.pem"), &ca_key_pem, true)?;
    write(&dir.join("node.pem"), &cert.pem(), false)?;
    write(&dir.join("node-key.pem"), &key.serialize_pem(), true)?;
    let d = dir.display();
    println!(
        "wrote a CA and a node certificate for {} to {d}",
        names.join(", ")
    );
    println!("start nodes with:  push node ... --tls-cert {d}/node.pem --tls-key {d}/node-key.pem --tls-ca {d}/ca.pem");
    println!("and clients with:  --tls-ca {d}/ca.pem   (or PUSH_TLS_CA={d}/ca.pem)");
    println!("keep {d}/ca-key.pem offline; sign a certificate for another host with `push tls-init NEWDIR --ca-dir {d} --host NAME`");
    Ok(())
}

/// Signs a node certificate for `hosts` with the CA in `ca_dir`, into `dir` (with a copy of
/// the CA certificate, so `dir` alone starts a node).
fn sign_with(ca_dir: &Path, dir: &Path, hosts: Vec<String>) -> anyhow::Result<()> {
    let ca_pem = read(&ca_dir.join("ca.pem"))?;
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join("ca-key.pem"))?).with_context(|| {
        format!(
            "{} is not a private key",
            ca_dir.join("ca-key.pem").display()
        )
    })?;
    let ca = Issuer::from_ca_cert_pem(&ca_pem, ca_key).with_context(|| {
        format!(
            "{} is not a CA certificate",
            ca_dir.join("ca.pem").display()
        )
    })?;
    let (params, names) = node_params(hosts)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    if dir.join("ca.pem") != ca_dir.join("ca.pem") {
        write(&dir.join("ca.pem"), &ca_pem, false)?;
    }
    write(&dir.join("node.pem"), &cert.pem(), false)?;
    write(&dir.join("node-key.pem"), &key.serialize_pem(), true)?;
    let d = dir.display();
    println!(
        "wrote a node certificate for {} signed by {}/ca.pem to {d}",
        names.join(", "),
        ca_dir.display()
    );
    println!("start the node with:  push node ... --tls-cert {d}/node.pem --tls-key {d}/node-key.pem --tls-ca {d}/ca.pem");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_created_owner_only_and_certificates_stay_readable() {
        let dir = tempfile::tempdir().expect("dir");
        let tls = dir.path().join("tls");
        run(TlsInitArgs {
            dir: tls.clone(),
            hosts: Vec::new(),
            ca_dir: None,
        })
        .expect("tls-init");
        for (name, secret) in FILES {
            let mode = mode(&tls.join(name));
            if secret {
                assert_eq!(mode, 0o600, "{name}");
            } else {
                // A certificate is public: created with the usual mode (umask applies).
                assert_ne!(mode & 0o400, 0, "{name}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_key_is_neither_overwritten_nor_opened_up() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("node-key.pem");
        std::fs::write(&key, "old key").expect("old key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = run(TlsInitArgs {
            dir: dir.path().to_path_buf(),
            hosts: Vec::new(),
            ca_dir: None,
        })
        .expect_err("an existing key is refused");
        assert!(err.to_string().contains("pick an empty directory"), "{err}");
        assert_eq!(std::fs::read_to_string(&key).expect("read"), "old key");
        assert_eq!(mode(&key), 0o600);
        // Nothing else was written next to it.
        assert!(!dir.path().join("ca.pem").exists());
        assert!(!dir.path().join("ca-key.pem").exists());
        // The lowest level refuses too, even if the file appears after the check.
        let err = write(&key, "new key", true).expect_err("create_new refuses");
        assert!(err.to_string().contains("exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&key).expect("read"), "old key");
    }

    /// A dangling symlink at a key's path does not "exist", but writing there would put the
    /// key wherever the link points.
    #[cfg(unix)]
    #[test]
    fn a_key_is_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().expect("dir");
        let elsewhere = dir.path().join("elsewhere.pem");
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).expect("tls dir");
        let link = tls.join("ca-key.pem");
        std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
        let err = run(TlsInitArgs {
            dir: tls.clone(),
            hosts: Vec::new(),
            ca_dir: None,
        })
        .expect_err("a symlink is refused");
        assert!(err.to_string().contains("ca-key.pem exists"), "{err}");
        assert!(
            !tls.join("ca.pem").exists(),
            "nothing written before refusing"
        );
        let err = write(&link, "key", true).expect_err("create_new refuses a symlink");
        assert!(err.to_string().contains("exists"), "{err}");
        assert!(!elsewhere.exists(), "no key where the link points");
    }
}
