//! TLS for the node's one address (client and peer traffic) with rustls: configs from PEM
//! files, and [`Stream`], the one connection type Push speaks over — plain TCP or TLS.
//!
//! A process talks to one cluster, so the client side is process-wide: once
//! [`use_for_clients`] is called, every connection this process dials is TLS, verified
//! against that CA.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Anything a connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// A connection: plain TCP or TLS over TCP.
pub type Stream = Box<dyn Io>;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: String,
        error: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no PEM certificate; pass a certificate file (`push tls-init` makes one)")]
    NoCertificate(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

static CLIENT: OnceLock<Arc<ClientConfig>> = OnceLock::new();

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |error| TlsError::Read {
        path: path.display().to_string(),
        error,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// A client config trusting the certificates in `ca` (a CA, or a self-signed node cert).
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server config presenting `cert` (PEM chain) with `key` (PEM private key).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::Read {
        path: key.display().to_string(),
        error,
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Makes every connection this process dials from now on use TLS with `config`.
pub fn use_for_clients(config: Arc<ClientConfig>) {
    let _ = CLIENT.set(config);
}

/// Whether this process dials with TLS.
pub fn enabled() -> bool {
    CLIENT.get().is_some()
}

/// The name a certificate must carry for `addr` ("host:port"): its IP or DNS name.
fn server_name(addr: &str) -> Result<ServerName<'static>, std::io::Error> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid TLS server name: {e}"),
        )
    })
}

/// Dials `addr` over TCP (no delay), then TLS if [`use_for_clients`] was called.
/// A failed TLS handshake is an `InvalidData` error whose text says what to check.
pub async fn dial(addr: &str) -> Result<Stream, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true).ok();
    let Some(config) = CLIENT.get() else {
        return Ok(Box::new(tcp));
    };
    let name = server_name(addr)?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("TLS handshake failed ({e}); does the node serve TLS with a certificate for this address, signed by the CA given with --tls-ca?"),
            )
        })?;
    Ok(Box::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_addresses() {
        assert!(matches!(
            server_name("127.0.0.1:7000"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:7000"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("node1.example:7000"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name:1").is_err());
    }

    #[test]
    fn missing_and_empty_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("push-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").expect("write");
        let e = client_config(&empty)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = client_config(&dir.join("missing.pem"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cannot read"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
