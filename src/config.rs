//! A node's settings: read from an optional RON file, then overridden by flags, then checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::consensus::RaftSettings;

/// Settings as written in `node.ron`; every field optional so flags can fill or override.
///
/// ```ron
/// (id: 1, listen: "127.0.0.1:7001", data: ".push/node1", join: None,
///  heartbeat_ms: 100, election_min_ms: 400, election_max_ms: 800)
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeFile {
    pub id: Option<u64>,
    pub listen: Option<String>,
    pub http: Option<String>,
    pub py_threads: Option<usize>,
    pub data: Option<PathBuf>,
    pub join: Option<String>,
    pub token_file: Option<PathBuf>,
    pub heartbeat_ms: Option<u64>,
    pub election_min_ms: Option<u64>,
    pub election_max_ms: Option<u64>,
    pub snapshot_every: Option<u64>,
    pub keep_logs: Option<u64>,
    /// Capability tags daemons can ask for with `where=` (e.g. `["gpu", "ssd"]`).
    pub tags: Option<Vec<String>>,
    /// Whether a GPU is present (default: detected from /dev/nvidia0).
    pub gpu: Option<bool>,
    /// TLS for client and peer traffic: this node's certificate chain (PEM)...
    pub tls_cert: Option<PathBuf>,
    /// ...its private key (PEM)...
    pub tls_key: Option<PathBuf>,
    /// ...and the CA (PEM) that signed every node's certificate, to verify peers.
    pub tls_ca: Option<PathBuf>,
    /// Dial peer `id` at this address instead of the address it advertises (a tunnel, a
    /// sidecar, or a test's fault proxy), e.g. `{2: "127.0.0.1:9102"}`. Raft RPCs, forwards
    /// to the leader and fan-outs to that peer all go there.
    pub peer_via: Option<BTreeMap<u64, String>>,
}

impl NodeFile {
    /// Reads a RON config file.
    pub fn load(path: &Path) -> Result<NodeFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(&text)
            .map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })
    }

    /// Fields set in `over` replace ours.
    pub fn merge(self, over: NodeFile) -> NodeFile {
        NodeFile {
            id: over.id.or(self.id),
            listen: over.listen.or(self.listen),
            http: over.http.or(self.http),
            py_threads: over.py_threads.or(self.py_threads),
            data: over.data.or(self.data),
            join: over.join.or(self.join),
            token_file: over.token_file.or(self.token_file),
            heartbeat_ms: over.heartbeat_ms.or(self.heartbeat_ms),
            election_min_ms: over.election_min_ms.or(self.election_min_ms),
            election_max_ms: over.election_max_ms.or(self.election_max_ms),
            snapshot_every: over.snapshot_every.or(self.snapshot_every),
            keep_logs: over.keep_logs.or(self.keep_logs),
            tags: over.tags.or(self.tags),
            gpu: over.gpu.or(self.gpu),
            tls_cert: over.tls_cert.or(self.tls_cert),
            tls_key: over.tls_key.or(self.tls_key),
            tls_ca: over.tls_ca.or(self.tls_ca),
            peer_via: match (self.peer_via, over.peer_via) {
                (Some(mut base), Some(over)) => {
                    base.extend(over);
                    Some(base)
                }
                (base, over) => over.or(base),
            },
        }
    }

    /// Checks and completes the settings.
    pub fn check(self) -> Result<NodeConfig, ConfigError> {
        let data = self.data.ok_or(ConfigError::Missing("data (--data DIR)"))?;
        let id_file = data.join("id");
        let stored_id = std::fs::read_to_string(&id_file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let id = match (self.id, stored_id) {
            (Some(a), Some(b)) if a != b => {
                return Err(ConfigError::Invalid(format!(
                    "--id {a} but {} belongs to node {b}; use --id {b} or another data dir",
                    data.display()
                )))
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => return Err(ConfigError::Missing("id (--id N)")),
        };
        if id == 0 {
            return Err(ConfigError::Invalid("node ids start at 1".into()));
        }
        let listen = self.listen.unwrap_or_else(|| "127.0.0.1:7001".into());
        let addr: SocketAddr = listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "--listen {listen:?} is not HOST:PORT (e.g. 127.0.0.1:7001)"
            ))
        })?;
        let http = match self.http {
            Some(h) => Some(h.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "--http {h:?} is not HOST:PORT (e.g. 127.0.0.1:8001)"
                ))
            })?),
            None => None,
        };
        let peer_via = self.peer_via.unwrap_or_default();
        for (peer, via) in &peer_via {
            if via.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "peer_via for node {peer}: {via:?} is not HOST:PORT (e.g. --peer-via {peer}=127.0.0.1:9102)"
                )));
            }
        }
        let defaults = RaftSettings::default();
        let raft = RaftSettings {
            heartbeat_ms: self.heartbeat_ms.unwrap_or(defaults.heartbeat_ms),
            election_min_ms: self.election_min_ms.unwrap_or(defaults.election_min_ms),
            election_max_ms: self.election_max_ms.unwrap_or(defaults.election_max_ms),
            snapshot_every: self.snapshot_every.unwrap_or(defaults.snapshot_every),
            keep_logs: self.keep_logs.unwrap_or(defaults.keep_logs),
        };
        if raft.election_min_ms <= raft.heartbeat_ms || raft.election_max_ms <= raft.election_min_ms
        {
            return Err(ConfigError::Invalid(
                "need heartbeat_ms < election_min_ms < election_max_ms".into(),
            ));
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            _ => {
                return Err(ConfigError::Invalid(
                    "TLS needs all of --tls-cert, --tls-key and --tls-ca (`push tls-init DIR` makes a CA and node certificates)".into(),
                ))
            }
        };
        Ok(NodeConfig {
            id,
            tls,
            listen: addr,
            http,
            py_threads: self.py_threads.unwrap_or(4).clamp(1, 64),
            data,
            join: self.join,
            token_file: self.token_file,
            raft,
            tags: self.tags.unwrap_or_default(),
            gpu: self.gpu,
            peer_via,
        })
    }
}

/// Checked settings of one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    pub listen: SocketAddr,
    /// Where app HTTP handlers are served (none when absent).
    pub http: Option<SocketAddr>,
    /// Python threads running handlers.
    pub py_threads: usize,
    pub data: PathBuf,
    pub join: Option<String>,
    pub token_file: Option<PathBuf>,
    pub raft: RaftSettings,
    pub tags: Vec<String>,
    pub gpu: Option<bool>,
    /// Peer id -> the address to dial it at (instead of its advertised one).
    pub peer_via: BTreeMap<u64, String>,
    /// TLS for client and peer traffic (none: plain TCP).
    pub tls: Option<TlsFiles>,
}

/// The PEM files a TLS node needs.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid RON: {message}")]
    Parse { path: String, message: String },
    #[error("missing setting: {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.ron");
        std::fs::write(
            &path,
            format!(
                "(id: 2, listen: \"127.0.0.1:7002\", data: {:?}, heartbeat_ms: 50)",
                dir.path().join("d")
            ),
        )
        .unwrap();
        let file = NodeFile::load(&path).unwrap();
        let config = file
            .merge(NodeFile {
                listen: Some("127.0.0.1:9000".into()),
                ..Default::default()
            })
            .check()
            .unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.raft.heartbeat_ms, 50);

        let config = NodeFile::load(&path)
            .unwrap()
            .merge(NodeFile {
                peer_via: Some(BTreeMap::from([(3, "127.0.0.1:9103".to_string())])),
                ..Default::default()
            })
            .check()
            .unwrap();
        assert_eq!(config.peer_via[&3], "127.0.0.1:9103");
        let err = NodeFile {
            peer_via: Some(BTreeMap::from([(3, "nowhere".to_string())])),
            ..NodeFile::load(&path).unwrap()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--peer-via 3="), "{err}");

        std::fs::write(&path, "(idd: 2)").unwrap();
        let err = NodeFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("not valid RON"), "{err}");
    }
}
