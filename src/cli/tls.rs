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
