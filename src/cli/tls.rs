//! `push tls-init`: a private CA and one node certificate, enough to run a cluster with TLS.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

#[derive(clap::Args, Debug)]
pub struct TlsInitArgs {
    /// Directory to write ca.pem, ca-key.pem, node.pem and node-key.pem into
    pub dir: PathBuf,
    /// A host name or IP the nodes are reached by; repeat for several (localhost and
    /// 127.0.0.1 are always included)
    #[arg(long = "host", value_name = "NAME|IP")]
    pub hosts: Vec<String>,
}

/// Writes `text` to `path`, readable only by its owner when `secret`.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    if path.exists() {
        anyhow::bail!(
            "{} exists; pick an empty directory so no key is overwritten",
            path.display()
        );
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

pub fn run(args: TlsInitArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Push cluster CA");
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for h in args.hosts {
        if !names.contains(&h) {
            names.push(h);
        }
    }
    let mut params = CertificateParams::new(names.clone())
        .context("a --host is neither a DNS name nor an IP address")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Push node");
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
    println!("keep {d}/ca-key.pem offline; it signs certificates for new hosts");
    Ok(())
}
