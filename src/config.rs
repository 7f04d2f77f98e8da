//! A node's settings: read from an optional RON file, then overridden by flags, then checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consensus::RaftSettings;

/// Settings as written in `node.ron`; every field optional so flags can fill or override.
///
/// ```ron
/// (id: 1, listen: "127.0.0.1:7001", data: ".push/node1", join: None,
///  heartbeat_ms: 40, election_min_ms: 100, election_max_ms: 160)
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeFile {
    pub id: Option<u64>,
    pub listen: Option<String>,
    pub http: Option<String>,
    pub py_threads: Option<usize>,
    /// Python worker processes (default: the machine's cores, at least 2).
    pub py_workers: Option<usize>,
    /// Restart a Python worker whose resident memory passes this many MiB (default: no limit).
    pub py_worker_max_rss: Option<u64>,
    /// Keep the environments of each app's last this many versions (default 5).
    pub keep_envs: Option<usize>,
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
    /// Client connections (after the hello) the node's address holds at once; more are told
    /// the node is busy. Default: a share of the open-file limit, at most 4096.
    pub max_connections: Option<usize>,
    /// HTTP connections serving requests at once; more get a 503. Default: a share of the
    /// open-file limit, at most 8192.
    pub http_max_connections: Option<usize>,
    /// Connections one client IP may hold on the node's address (default: no cap; set one
    /// on a port that faces the internet).
    pub max_connections_per_ip: Option<usize>,
    /// Connections one client IP may hold on the HTTP port (default: no cap).
    pub http_max_connections_per_ip: Option<usize>,
    /// Time a new connection to the node's address has to send its hello (default 5000).
    pub hello_timeout_ms: Option<u64>,
    /// Time an HTTP connection has to send a complete request head, counted from its accept
    /// or its previous response: both the header-read and the keep-alive idle timeout
    /// (default 10000).
    pub http_header_timeout_ms: Option<u64>,
    /// Time an HTTP request has to send its whole body (default 30000).
    pub http_body_timeout_ms: Option<u64>,
    /// Largest HTTP request body in bytes, refused with 413 (default 16 MiB).
    pub http_max_body: Option<u64>,
    /// Largest HTTP request head (request line and headers) in bytes, refused with 431
    /// (default 64 KiB, at least 8192).
    pub http_max_head: Option<u64>,
    /// How the node writes its log to stderr: "text" (default) or "json".
    pub log_format: Option<String>,
    /// Join as a learner: replicate and serve reads, without a vote (needs `join`).
    pub learner: Option<bool>,
    /// On shutdown (SIGINT/SIGTERM), ask the cluster to remove this node first.
    pub leave: Option<bool>,
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
            py_workers: over.py_workers.or(self.py_workers),
            py_worker_max_rss: over.py_worker_max_rss.or(self.py_worker_max_rss),
            keep_envs: over.keep_envs.or(self.keep_envs),
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
            max_connections: over.max_connections.or(self.max_connections),
            http_max_connections: over.http_max_connections.or(self.http_max_connections),
            max_connections_per_ip: over.max_connections_per_ip.or(self.max_connections_per_ip),
            http_max_connections_per_ip: over
                .http_max_connections_per_ip
                .or(self.http_max_connections_per_ip),
            hello_timeout_ms: over.hello_timeout_ms.or(self.hello_timeout_ms),
            http_header_timeout_ms: over.http_header_timeout_ms.or(self.http_header_timeout_ms),
            http_body_timeout_ms: over.http_body_timeout_ms.or(self.http_body_timeout_ms),
            http_max_body: over.http_max_body.or(self.http_max_body),
            http_max_head: over.http_max_head.or(self.http_max_head),
            log_format: over.log_format.or(self.log_format),
            learner: over.learner.or(self.learner),
            leave: over.leave.or(self.leave),
        }
    }

    /// Checks and completes the settings.
    pub fn check(self) -> Result<NodeConfig, ConfigError> {
        let connections = ConnectionSettings::check(&self)?;
        let log_format = match self.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "log_format {other:?} is not a log format: give \"text\" or \"json\""
                )))
            }
        };
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
        let learner = self.learner.unwrap_or(false);
        if learner && self.join.is_none() {
            return Err(ConfigError::Invalid(
                "--learner joins an existing cluster as a non-voting member: give --join HOST:PORT of one of its nodes too".into(),
            ));
        }
        Ok(NodeConfig {
            learner,
            leave: self.leave.unwrap_or(false),
            connections,
            id,
            tls,
            listen: addr,
            http,
            py_threads: self.py_threads.unwrap_or(4).clamp(1, 64),
            py_workers: match self.py_workers {
                Some(0) => {
                    return Err(ConfigError::Invalid(
                        "--py-workers must be at least 1 (app code runs only in workers)".into(),
                    ))
                }
                Some(n) => n.min(256),
                None => std::thread::available_parallelism()
                    .map_or(2, |n| n.get())
                    .max(2),
            },
            py_worker_max_rss: match self.py_worker_max_rss {
                Some(mb) if mb < 32 => {
                    return Err(ConfigError::Invalid(format!(
                        "--py-worker-max-rss {mb} (MiB) is below what a Python worker needs to start; give at least 32"
                    )))
                }
                other => other.map(|mb| mb << 20),
            },
            keep_envs: self.keep_envs.unwrap_or(DEFAULT_KEEP_ENVS).max(1),
            data,
            join: self.join,
            token_file: self.token_file,
            raft,
            tags: self.tags.unwrap_or_default(),
            gpu: self.gpu,
            peer_via,
            log_format,
        })
    }
}

/// How many of each app's latest versions keep their environment installed by default.
pub const DEFAULT_KEEP_ENVS: usize = 5;

/// Checked settings of one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    pub listen: SocketAddr,
    /// Where app HTTP handlers are served (none when absent).
    pub http: Option<SocketAddr>,
    /// Python threads in each worker process.
    pub py_threads: usize,
    /// Python worker processes.
    pub py_workers: usize,
    /// A worker over this many bytes of resident memory is restarted.
    pub py_worker_max_rss: Option<u64>,
    /// The environments of each app's last this many versions stay installed (`--keep-envs`).
    pub keep_envs: usize,
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
    /// Connection budgets, caps and deadlines of both listeners.
    pub connections: ConnectionSettings,
    /// How the node's log is written to stderr.
    pub log_format: LogFormat,
    /// Join as a learner (a non-voting member) rather than a voter.
    pub learner: bool,
    /// Ask the cluster to remove this node when it is shut down.
    pub leave: bool,
}

/// How a node writes its log to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line (for log collectors).
    Json,
}

/// How many connections each listener holds and how long a silent one may stay (see
/// `server::limits`, which sizes what is not set here from the open-file limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub max_connections: Option<usize>,
    pub http_max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub http_max_connections_per_ip: Option<usize>,
    pub hello_timeout: Duration,
    pub http_header_timeout: Duration,
    pub http_body_timeout: Duration,
    /// Largest request body (bytes); a larger one gets 413.
    pub http_max_body: u64,
    /// Largest request head (bytes); a larger one gets 431.
    pub http_max_head: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max_connections: None,
            http_max_connections: None,
            max_connections_per_ip: None,
            http_max_connections_per_ip: None,
            hello_timeout: Duration::from_secs(5),
            http_header_timeout: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(30),
            http_max_body: 16 << 20,
            http_max_head: 64 << 10,
        }
    }
}

impl ConnectionSettings {
    fn check(file: &NodeFile) -> Result<ConnectionSettings, ConfigError> {
        let d = ConnectionSettings::default();
        let positive = |v: Option<usize>, name: &str| match v {
            Some(0) => Err(ConfigError::Invalid(format!(
                "{name} must be at least 1 (leave it out for the default)"
            ))),
            v => Ok(v),
        };
        let millis = |v: Option<u64>, name: &str, default: Duration| match v {
            None => Ok(default),
            Some(ms) if (100..=3_600_000).contains(&ms) => Ok(Duration::from_millis(ms)),
            Some(ms) => Err(ConfigError::Invalid(format!(
                "{name} {ms} is out of range: give 100 to 3600000 milliseconds"
            ))),
        };
        Ok(ConnectionSettings {
            max_connections: positive(file.max_connections, "max_connections")?,
            http_max_connections: positive(file.http_max_connections, "http_max_connections")?,
            max_connections_per_ip: positive(
                file.max_connections_per_ip,
                "max_connections_per_ip",
            )?,
            http_max_connections_per_ip: positive(
                file.http_max_connections_per_ip,
                "http_max_connections_per_ip",
            )?,
            hello_timeout: millis(file.hello_timeout_ms, "hello_timeout_ms", d.hello_timeout)?,
            http_header_timeout: millis(
                file.http_header_timeout_ms,
                "http_header_timeout_ms",
                d.http_header_timeout,
            )?,
            http_body_timeout: millis(
                file.http_body_timeout_ms,
                "http_body_timeout_ms",
                d.http_body_timeout,
            )?,
            http_max_body: match file.http_max_body {
                None => d.http_max_body,
                Some(n) if (1..=1 << 40).contains(&n) => n,
                Some(n) => {
                    return Err(ConfigError::Invalid(format!(
                        "http_max_body {n} is out of range: give 1 to {} bytes",
                        1u64 << 40
                    )))
                }
            },
            http_max_head: match file.http_max_head {
                None => d.http_max_head,
                Some(n) if (8192..=1 << 20).contains(&n) => n as usize,
                Some(n) => {
                    return Err(ConfigError::Invalid(format!(
                        "http_max_head {n} is out of range: give 8192 to {} bytes",
                        1u64 << 20
                    )))
                }
            },
        })
    }
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
        let err = NodeFile {
            learner: Some(true),
            ..NodeFile::load(&path).unwrap()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(err.contains("give --join HOST:PORT"), "{err}");

        std::fs::write(
            &path,
            format!(
                "(id: 2, data: {:?}, max_connections: 10, hello_timeout_ms: 2000, http_max_connections_per_ip: 8)",
                dir.path().join("d")
            ),
        )
        .unwrap();
        let c = NodeFile::load(&path)
            .unwrap()
            .merge(NodeFile {
                max_connections: Some(20),
                http_body_timeout_ms: Some(1500),
                ..Default::default()
            })
            .check()
            .unwrap()
            .connections;
        assert_eq!(c.max_connections, Some(20));
        assert_eq!(c.hello_timeout, Duration::from_secs(2));
        assert_eq!(c.http_max_connections_per_ip, Some(8));
        assert_eq!(c.http_body_timeout, Duration::from_millis(1500));
        assert_eq!(c.http_header_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections_per_ip, None);
        let err = NodeFile {
            hello_timeout_ms: Some(0),
            ..NodeFile::load(&path).unwrap()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(err.contains("100 to 3600000"), "{err}");

        std::fs::write(&path, "(idd: 2)").unwrap();
        let err = NodeFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("not valid RON"), "{err}");
    }
}
