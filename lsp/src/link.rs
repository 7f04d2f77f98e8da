//! The link to a node: connects in the background (trying every known address, with backoff up
//! to 2 s), watches the node's status, opens the server's eval session lazily, and answers
//! requests with [`LspError::Unreachable`] while no node is connected. A request waits (up to
//! [`REQUEST_TIMEOUT`]) only while a connection attempt is under way — the first one after
//! `initialized`, say — and otherwise fails at once, so an editor never waits on a dead node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_protocol::{Client, ClientError, NodeStatus, Op, Reply};
use tokio::sync::{mpsc, watch, Notify};

use crate::error::{AttemptError, ConnectError, LspError};
use crate::ext::PushStatus;

/// How long one connection attempt may take before the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a connected node's status is polled (HEAD changes, liveness).
const POLL: Duration = Duration::from_millis(1000);
/// The longest a request waits on a node that stopped answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The app whose HEAD the status reports (what `push deploy` uses by default).
pub const APP: &str = "main";

/// Where to connect, as resolved from the editor's options, flags, environment or `.push/`.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    pub addrs: Vec<String>,
    pub token: Option<String>,
    /// Why nothing can be tried (no address, no token), said to the user.
    pub problem: Option<String>,
}

#[derive(Default)]
struct State {
    targets: Option<Targets>,
    client: Option<Arc<Client>>,
    node: Option<u64>,
    /// The server's session and the node it lives on (sessions survive reconnects there).
    session: Option<(u64, u64)>,
    status: PushStatus,
    last_error: Option<String>,
}

/// Shared by every request handler and the background connector.
pub struct Link {
    state: Mutex<State>,
    wake: Notify,
    /// Bumped whenever the connection is dropped, so streams waiting on it give up.
    generation: watch::Sender<u64>,
    /// True while a connection attempt is due or under way (from creation until the first
    /// attempt ends, and during every later attempt): requests wait for it instead of failing.
    attempting: watch::Sender<bool>,
    statuses: mpsc::UnboundedSender<PushStatus>,
}

impl Link {
    /// A link that reports status changes on `statuses`; call [`Link::set_targets`] and spawn
    /// [`Link::run`] to start connecting.
    pub fn new(statuses: mpsc::UnboundedSender<PushStatus>) -> Link {
        Link {
            state: Mutex::new(State {
                status: PushStatus {
                    message: "not connected yet".into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            wake: Notify::new(),
            generation: watch::channel(0).0,
            attempting: watch::channel(true).0,
            statuses,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets where to connect (replacing any earlier targets) and connects now.
    pub fn set_targets(&self, targets: Targets) {
        self.drop_client("reconfigured");
        self.state().targets = Some(targets);
        self.attempting.send_replace(true);
        self.wake.notify_one();
    }

    /// Asks the connector to check the node now (after a deploy or rollback moved HEAD).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// The connection's current status.
    pub fn status(&self) -> PushStatus {
        self.state().status.clone()
    }

    /// The connected client. While a connection attempt is under way this waits for it (up to
    /// [`REQUEST_TIMEOUT`]); otherwise it answers at once.
    pub async fn client(&self) -> Result<Arc<Client>, LspError> {
        let mut attempting = self.attempting.subscribe();
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            if let Some(client) = self.connected() {
                return Ok(client);
            }
            if !*attempting.borrow_and_update() {
                break;
            }
            if tokio::time::timeout_at(deadline, attempting.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        self.client_now()
    }

    fn connected(&self) -> Option<Arc<Client>> {
        self.state()
            .client
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// The connected client, or an immediate error (and a nudge to the connector).
    fn client_now(&self) -> Result<Arc<Client>, LspError> {
        let state = self.state();
        match &state.client {
            Some(c) if !c.is_closed() => Ok(c.clone()),
            _ => {
                let why = state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "connecting".into());
                drop(state);
                self.wake.notify_one();
                Err(LspError::Unreachable(why))
            }
        }
    }

    /// Address and token of the connected node (or the first configured one).
    pub fn target(&self) -> Result<(String, String), LspError> {
        let state = self.state();
        let targets = state.targets.clone().unwrap_or_default();
        let token = targets.token.clone().ok_or_else(|| {
            LspError::Unreachable(targets.problem.clone().unwrap_or_else(|| "no token".into()))
        })?;
        let addr = match &state.client {
            Some(c) => c.addr().to_string(),
            None => targets.addrs.first().cloned().ok_or_else(|| {
                LspError::Unreachable(
                    targets
                        .problem
                        .clone()
                        .unwrap_or_else(|| "no address".into()),
                )
            })?,
        };
        Ok((addr, token))
    }

    /// One request with a reply, bounded by `timeout`.
    pub async fn call(&self, op: Op, timeout: Duration) -> Result<Reply, LspError> {
        let client = self.client().await?;
        match tokio::time::timeout(timeout, client.call(op)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.failed(&client, e)),
            Err(_) => Err(LspError::Timeout {
                addr: client.addr().to_string(),
                millis: timeout.as_millis() as u64,
            }),
        }
    }

    /// Turns a client error into an [`LspError`], dropping the connection if it is gone.
    pub fn failed(&self, client: &Arc<Client>, e: ClientError) -> LspError {
        if client.is_closed() || matches!(e, ClientError::Closed { .. }) {
            self.drop_client(&e.to_string());
        }
        LspError::Node(e)
    }

    /// A receiver that changes when the current connection is dropped.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The server's eval session on the connected node, opened on first use.
    pub async fn session(&self) -> Result<u64, LspError> {
        if let Some(id) = self.current_session() {
            return Ok(id);
        }
        let node = self.state().node;
        match self.call(Op::SessionOpen, REQUEST_TIMEOUT).await? {
            Reply::Session { id } => {
                if let Some(node) = node {
                    self.state().session = Some((node, id));
                }
                Ok(id)
            }
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Forgets the session (the node lost it); the next eval opens a new one.
    pub fn forget_session(&self) {
        self.state().session = None;
    }

    /// The session if one is open, without opening one.
    pub fn current_session(&self) -> Option<u64> {
        let state = self.state();
        match (state.session, state.node) {
            (Some((node_of, id)), Some(node)) if node_of == node => Some(id),
            _ => None,
        }
    }

    fn drop_client(&self, reason: &str) {
        let had = {
            let mut state = self.state();
            state.last_error = Some(reason.to_string());
            state.client.take().is_some()
        };
        if had {
            self.generation.send_modify(|g| *g += 1);
            self.publish(PushStatus {
                connected: false,
                message: format!("lost the connection: {reason}; reconnecting"),
                ..self.status()
            });
            self.wake.notify_one();
        }
    }

    fn publish(&self, status: PushStatus) {
        let changed = {
            let mut state = self.state();
            let changed = state.status != status;
            state.status = status.clone();
            changed
        };
        if changed {
            let _ = self.statuses.send(status);
        }
    }

    /// Keeps a connection up for as long as the server runs.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let (targets, connected) = {
                let state = self.state();
                let connected = state.client.as_ref().is_some_and(|c| !c.is_closed());
                (state.targets.clone(), connected)
            };
            let Some(targets) = targets else {
                self.wake.notified().await;
                continue;
            };
            if connected {
                backoff = Duration::from_millis(100);
                let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
                self.poll().await;
                continue;
            }
            self.attempting.send_replace(true);
            let attempt = self.connect(&targets).await;
            self.attempting.send_replace(false);
            match attempt {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    let message = e.to_string();
                    self.state().last_error = Some(message.clone());
                    self.publish(PushStatus {
                        connected: false,
                        address: targets.addrs.first().cloned(),
                        node: None,
                        role: None,
                        version: None,
                        message,
                    });
                    let _ = tokio::time::timeout(backoff, self.wake.notified()).await;
                    // A nudge from a request still waits a little, so a flood of requests on
                    // a dead node does not become a flood of connection attempts.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn connect(&self, targets: &Targets) -> Result<(), ConnectError> {
        if let Some(problem) = &targets.problem {
            return Err(ConnectError::Targets(problem.clone()));
        }
        let Some(token) = &targets.token else {
            return Err(ConnectError::NoToken);
        };
        let mut errors = Vec::new();
        for addr in &targets.addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr, token)).await {
                Ok(Ok(client)) => {
                    let client = Arc::new(client);
                    let node = client.welcome().node_id;
                    {
                        let mut state = self.state();
                        state.client = Some(client.clone());
                        state.node = Some(node);
                        state.last_error = None;
                    }
                    // Requests waiting for this attempt go ahead now, not after the poll.
                    self.attempting.send_replace(false);
                    self.poll().await;
                    return Ok(());
                }
                Ok(Err(e)) => errors.push(AttemptError::Failed(e)),
                Err(_) => errors.push(AttemptError::TimedOut {
                    addr: addr.clone(),
                    millis: CONNECT_TIMEOUT.as_millis() as u64,
                }),
            }
        }
        if errors.is_empty() {
            return Err(ConnectError::NoAddress);
        }
        Err(ConnectError::Unreachable(errors))
    }

    /// Reads the node's status and publishes it if it changed (drops a dead connection).
    async fn poll(&self) {
        let Some(client) = self.connected() else {
            return;
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, client.call(Op::Status)).await {
            Ok(Ok(Reply::Status(s))) => self.publish(connected_status(client.addr(), &s)),
            Ok(Ok(other)) => self.drop_client(&format!("unexpected status reply {other:?}")),
            Ok(Err(e)) => self.drop_client(&e.to_string()),
            Err(_) => self.drop_client(&format!(
                "{} did not answer a status request within {} ms",
                client.addr(),
                REQUEST_TIMEOUT.as_millis()
            )),
        }
    }
}

fn connected_status(addr: &str, s: &NodeStatus) -> PushStatus {
    let version = s.heads.iter().find(|(app, _)| app == APP).map(|(_, v)| *v);
    let head = version.map_or("nothing deployed".to_string(), |v| format!("{APP}@v{v}"));
    PushStatus {
        connected: true,
        address: Some(addr.to_string()),
        node: Some(s.id),
        role: Some(s.role.clone()),
        version,
        message: format!("node {} ({}) at {addr}, {head}", s.id, s.role),
    }
}
