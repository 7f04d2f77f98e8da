//! The async client: one TCP connection, many concurrent requests matched to replies by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::codec::CodecError;
use crate::format::{self, handshake as layout, FORMAT_VERSION, MIN_FORMAT_VERSION};
use crate::frame::{self, FrameError, Kind, MAX_CLIENT_FRAME};
use crate::message::{ErrorBody, ErrorCode, Hello, Op, Outcome, Reply, Role, Welcome, MAGIC};
use crate::tls::Stream;

/// How long connecting and the handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {error}{}", connect_hint(error))]
    Connect { addr: String, error: std::io::Error },
    #[error("connecting to {0} timed out; is the address right and the node healthy?")]
    ConnectTimeout(String),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("the node refused the connection: {0}")]
    Refused(ErrorBody),
    #[error("{0}")]
    Server(ErrorBody),
    #[error("connection to {addr} lost: {reason}")]
    Closed { addr: String, reason: String },
}

/// What to check after a failed connect: nothing listening suggests no node; a failed TLS
/// handshake (its text says what to check) is about certificates, not whether a node runs.
fn connect_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable => {
            "; is a Push node running there? (`push up` starts a local cluster)"
        }
        _ => "",
    }
}

impl ClientError {
    /// The server's error code, when the server answered with an error.
    pub fn code(&self) -> Option<crate::ErrorCode> {
        match self {
            ClientError::Refused(body) | ClientError::Server(body) => Some(body.code),
            _ => None,
        }
    }
}

type Waiters = HashMap<u64, mpsc::UnboundedSender<Outcome>>;

struct Shared {
    waiters: Waiters,
    /// Set when the reader stopped; later calls fail at once with this reason.
    closed: Option<String>,
}

/// A connection to one node.
pub struct Client {
    addr: String,
    welcome: Welcome,
    /// The format of this connection (the welcome's choice).
    version: u32,
    writer: tokio::sync::Mutex<WriteHalf<Stream>>,
    shared: Arc<Mutex<Shared>>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connects as a client and authenticates with `token`.
    pub async fn connect(addr: &str, token: &str) -> Result<Client, ClientError> {
        Client::connect_as(addr, token, "push-client").await
    }

    /// Connects naming itself `name` in the hello (nodes use "push-node" for their own
    /// requests to each other, which are not audited as a person's).
    pub async fn connect_as(addr: &str, token: &str, name: &str) -> Result<Client, ClientError> {
        let dial = || async {
            tokio::time::timeout(CONNECT_TIMEOUT, crate::tls::dial(addr))
                .await
                .map_err(|_| ClientError::ConnectTimeout(addr.to_string()))?
                .map_err(|error| ClientError::Connect {
                    addr: addr.to_string(),
                    error,
                })
        };
        let shake = |stream, offer| async move {
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                handshake_offering(stream, addr, token, Role::Client, name, offer),
            )
            .await
            .map_err(|_| ClientError::ConnectTimeout(addr.to_string()))?
        };
        let (stream, welcome) = match shake(dial().await?, FORMAT_VERSION).await {
            // A node of format 1 wants its own version exactly: ask again for that.
            Err(e) if needs_older_hello(&e) => shake(dial().await?, MIN_FORMAT_VERSION).await?,
            other => other?,
        };
        let version = welcome.protocol;
        let (mut read, write) = tokio::io::split(stream);
        let shared = Arc::new(Mutex::new(Shared {
            waiters: HashMap::new(),
            closed: None,
        }));
        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            let reason = read_loop(&mut read, &reader_shared, version).await;
            let mut shared = lock(&reader_shared);
            shared.closed = Some(reason);
            shared.waiters.clear();
        });
        Ok(Client {
            addr: addr.to_string(),
            welcome,
            version,
            writer: tokio::sync::Mutex::new(write),
            shared,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    /// The node's answer to the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Whether the connection is known to be gone (calls would fail without being sent).
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).closed.is_some()
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `op` and waits for its (single or last) reply.
    pub async fn call(&self, op: Op) -> Result<Reply, ClientError> {
        let mut replies = self.call_stream(op).await?;
        let mut last = None;
        while let Some(outcome) = replies.recv().await {
            last = Some(outcome);
        }
        match last {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(body)) => Err(ClientError::Server(body)),
            None => Err(self.closed_error()),
        }
    }

    /// Sends `op` and returns every reply frame as it arrives; the channel ends after the last.
    pub async fn call_stream(
        &self,
        op: Op,
    ) -> Result<mpsc::UnboundedReceiver<Outcome>, ClientError> {
        if op.since_format() > self.version {
            return Err(ClientError::Server(ErrorBody::new(
                crate::ErrorCode::VersionMismatch,
                format!(
                    "this request needs format {} and the node at {} (Push {}) speaks format {}; upgrade that node first",
                    op.since_format(),
                    self.addr,
                    self.welcome.push_version,
                    self.version
                ),
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut shared = lock(&self.shared);
            if let Some(reason) = &shared.closed {
                return Err(ClientError::Closed {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                });
            }
            shared.waiters.insert(id, tx);
        }
        let body = format::encode(self.version, &op)?;
        let bytes = frame::encode_frame(Kind::Request, &[&id.to_be_bytes(), &body]);
        let result = {
            use tokio::io::AsyncWriteExt;
            let mut writer = self.writer.lock().await;
            writer.write_all(&bytes).await
        };
        if let Err(e) = result {
            lock(&self.shared).waiters.remove(&id);
            return Err(ClientError::Closed {
                addr: self.addr.clone(),
                reason: e.to_string(),
            });
        }
        Ok(rx)
    }

    fn closed_error(&self) -> ClientError {
        let reason = lock(&self.shared)
            .closed
            .clone()
            .unwrap_or_else(|| "the node closed the connection".to_string());
        ClientError::Closed {
            addr: self.addr.clone(),
            reason,
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Performs the hello/welcome exchange on a fresh stream, offering this release's format;
/// the welcome names the format of the connection. Used by clients and by peers, which
/// retry with [`MIN_FORMAT_VERSION`] when [`needs_older_hello`] says so.
pub async fn handshake(
    stream: Stream,
    addr: &str,
    token: &str,
    role: Role,
    client: &str,
) -> Result<(Stream, Welcome), ClientError> {
    handshake_offering(stream, addr, token, role, client, FORMAT_VERSION).await
}

/// Whether a failed [`handshake`] should be retried on a new connection offering
/// [`MIN_FORMAT_VERSION`]: a node of format 1 refuses any hello but its own version exactly.
pub fn needs_older_hello(e: &ClientError) -> bool {
    MIN_FORMAT_VERSION < FORMAT_VERSION
        && matches!(e, ClientError::Refused(body) if body.code == ErrorCode::VersionMismatch)
}

/// [`handshake`], offering formats up to `offer`.
pub async fn handshake_offering(
    mut stream: Stream,
    addr: &str,
    token: &str,
    role: Role,
    client: &str,
    offer: u32,
) -> Result<(Stream, Welcome), ClientError> {
    let hello = Hello {
        magic: MAGIC,
        protocol: offer,
        token: token.to_string(),
        role,
        client: format!("{client} {} {}", crate::PUSH_VERSION, whoami()),
    };
    frame::write_frame(&mut stream, Kind::Hello, &layout::encode_hello(&hello))
        .await
        .map_err(FrameError::Io)?;
    let closed = |what: String| ClientError::Closed {
        addr: addr.to_string(),
        reason: if crate::tls::enabled() {
            what
        } else {
            format!("{what}; if the node serves TLS, pass --tls-ca (or set PUSH_TLS_CA)")
        },
    };
    let reply = match frame::read_frame(&mut stream, MAX_CLIENT_FRAME).await {
        Ok(Some(reply)) => reply,
        Ok(None) => return Err(closed("closed during the handshake".into())),
        Err(FrameError::Io(e)) => return Err(closed(format!("lost during the handshake ({e})"))),
        // A TLS alert read as a frame looks like a huge or malformed one.
        Err(e) => return Err(closed(format!("not a Push reply to the hello ({e})"))),
    };
    match reply.kind {
        Kind::Welcome => {
            let welcome = layout::decode_welcome(&reply.payload)?;
            if welcome.protocol > offer || welcome.protocol < MIN_FORMAT_VERSION {
                return Err(ClientError::Refused(ErrorBody::new(
                    ErrorCode::VersionMismatch,
                    format!(
                        "the node (push {}) chose format {}, but this program (push {}) speaks formats {MIN_FORMAT_VERSION} to {offer}; use a Push release that speaks format {}",
                        welcome.push_version, welcome.protocol, crate::PUSH_VERSION, welcome.protocol
                    ),
                )));
            }
            Ok((stream, welcome))
        }
        Kind::Error => Err(ClientError::Refused(layout::decode_refusal(
            &reply.payload,
        )?)),
        other => Err(ClientError::Closed {
            addr: addr.to_string(),
            reason: format!("unexpected {other:?} frame during the handshake"),
        }),
    }
}

async fn read_loop(read: &mut ReadHalf<Stream>, shared: &Mutex<Shared>, version: u32) -> String {
    loop {
        let frame = match frame::read_frame(read, MAX_CLIENT_FRAME).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return "the node closed the connection".into(),
            Err(e) => return e.to_string(),
        };
        match frame.kind {
            Kind::Response if frame.payload.len() >= 9 => {
                let mut id = [0u8; 8];
                id.copy_from_slice(&frame.payload[..8]);
                let id = u64::from_be_bytes(id);
                let last = frame.payload[8] != 0;
                let outcome: Outcome = match format::decode_outcome(version, &frame.payload[9..]) {
                    Ok(outcome) => outcome,
                    Err(e) => Err(ErrorBody::new(
                        crate::ErrorCode::BadFrame,
                        format!("could not decode the node's reply ({e}); are client and node the same Push version?"),
                    )),
                };
                let mut shared = lock(shared);
                if let Some(tx) = shared.waiters.get(&id) {
                    let _ = tx.send(outcome);
                }
                if last {
                    shared.waiters.remove(&id);
                }
            }
            Kind::Error => {
                return match format::decode::<ErrorBody>(version, &frame.payload) {
                    Ok(body) => body.message,
                    Err(_) => "the node sent an undecodable error".into(),
                }
            }
            other => return format!("unexpected {other:?} frame from the node"),
        }
    }
}

/// The user, host and program behind this process, as "(push repl; alice@box)": what the
/// audit log shows as who did something.
pub fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let program = match args.next() {
        Some(sub) if !sub.starts_with('-') && sub.len() < 32 => format!("{program} {sub}"),
        _ => program,
    };
    format!("({program}; {user}@{host})")
}
