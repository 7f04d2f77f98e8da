//! A running node: the Raft replica, the shared state, and the routing of requests that must
//! run on the leader (writes, linearizable reads, membership changes).
//!
//! A follower forwards such a request to the leader over an ordinary client connection, so a
//! client may talk to any node. A forward is retried only when it provably did not reach the
//! leader (the connection could not be opened); once sent, a lost answer is reported as an
//! unknown outcome rather than risking a write applied twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ServerState};
use push_protocol::{Client, ClientError, ErrorBody, ErrorCode, Member, NodeStatus, Op, Reply};

use crate::consensus::{Raft, SharedState};
use crate::model::{Applied, Command, CommandOp, State};
use crate::runtime::Runtime;

/// How long a request may wait for a leader before failing with `NoLeader`.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// Forwarding hops allowed (a leader change mid-forward costs one).
const MAX_HOPS: u8 = 3;

/// Where a leader-only request ended up.
pub enum Route<T> {
    Done(T),
    /// Not the leader; the leader, if known.
    Forward(Option<BasicNode>),
}

/// Rounds of leadership confirmation a linearizable read tries before it fails.
pub const LINEARIZABLE_ATTEMPTS: u32 = 4;

/// What [`Node::new`] assembles.
pub struct NodeParts {
    pub id: u64,
    pub addr: String,
    pub raft: Raft,
    pub state: Arc<SharedState>,
    pub token: String,
    pub runtime: Arc<Runtime>,
    pub http: Option<String>,
    pub peer_via: BTreeMap<u64, String>,
}

/// A node's running parts.
pub struct Node {
    pub id: u64,
    pub addr: String,
    pub raft: Raft,
    pub state: Arc<SharedState>,
    pub token: String,
    pub runtime: Arc<Runtime>,
    /// Where app HTTP handlers are served, if anywhere.
    pub http: Option<String>,
    /// Peer id -> address to dial it at instead of its advertised one (`--peer-via`).
    pub peer_via: BTreeMap<u64, String>,
    started: Instant,
    leaders: tokio::sync::Mutex<HashMap<String, Arc<Client>>>,
    membership: tokio::sync::Mutex<()>,
    /// Audit notes of evals and lambdas waiting to be proposed.
    pub audit: crate::server::audit::Recorder,
}

/// Milliseconds since the Unix epoch, read by the proposer (never inside apply).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn internal(e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, e.to_string())
}

fn forward_of<E>(f: &ForwardToLeader<u64, BasicNode>) -> Result<Route<E>, ErrorBody> {
    Ok(Route::Forward(f.leader_node.clone()))
}

impl Node {
    /// Assembles a node from its running parts.
    pub fn new(parts: NodeParts) -> Node {
        let NodeParts {
            id,
            addr,
            raft,
            state,
            token,
            runtime,
            http,
            peer_via,
        } = parts;
        Node {
            id,
            addr,
            raft,
            state,
            token,
            runtime,
            http,
            peer_via,
            started: Instant::now(),
            leaders: tokio::sync::Mutex::new(HashMap::new()),
            membership: tokio::sync::Mutex::new(()),
            audit: Default::default(),
        }
    }

    /// Whether this node is the leader right now (by its own view).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Reads the applied state under a short lock.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().state)
    }

    /// Proposes a command on this node; `Forward` when it is not the leader.
    pub async fn propose(&self, op: CommandOp) -> Result<Route<(Applied, u64)>, ErrorBody> {
        let command = Command {
            time_ms: now_ms(),
            op,
        };
        match self.raft.client_write(command).await {
            Ok(resp) => Ok(Route::Done((resp.data, resp.log_id.index))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => forward_of(&f),
            Err(e) => Err(ErrorBody::new(
                ErrorCode::Unavailable,
                format!("write failed: {e}; retry, and check `push status` if it persists"),
            )),
        }
    }

    /// `Done` when this node believes it is the leader, else where to forward.
    pub fn leader_route(&self) -> Route<()> {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            return Route::Done(());
        }
        let leader = m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
        Route::Forward(leader)
    }

    /// Confirms leadership with a quorum so that a local read is linearizable.
    ///
    /// One round of confirmations can miss its 100 ms deadline on a busy machine (a peer busy
    /// importing a 10,000-module deploy, say), so a failed round is retried, up to
    /// [`LINEARIZABLE_ATTEMPTS`] rounds, before the client hears "unavailable".
    pub async fn linearizable(&self) -> Result<Route<()>, ErrorBody> {
        let mut attempt = 1;
        loop {
            match self.raft.ensure_linearizable().await {
                Ok(_) => return Ok(Route::Done(())),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                    f,
                ))) => return forward_of(&f),
                Err(e) if attempt >= LINEARIZABLE_ATTEMPTS => {
                    return Err(ErrorBody::new(
                        ErrorCode::Unavailable,
                        format!(
                            "could not confirm leadership with a majority \
                             ({attempt} attempts): {e}; retry shortly"
                        ),
                    ))
                }
                Err(e) => {
                    tracing::debug!(attempt, "confirming leadership failed, retrying: {e}");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
                }
            }
        }
    }

    /// Adds node `id` at `addr` as a learner, waits for it to catch up, then makes it a voter.
    pub async fn join(&self, id: u64, addr: &str) -> Result<Route<Vec<Member>>, ErrorBody> {
        let _serial = self.membership.lock().await;
        let current = self.members();
        if let Some(m) = current.iter().find(|m| m.id == id) {
            if m.addr != addr {
                return Err(ErrorBody::new(
                    ErrorCode::Invalid,
                    format!(
                        "node id {id} is already a member at {}; pick another --id",
                        m.addr
                    ),
                ));
            }
            if m.voter {
                return Ok(Route::Done(current));
            }
        }
        match self.raft.add_learner(id, BasicNode::new(addr), true).await {
            Ok(_) => {}
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return forward_of(&f)
            }
            Err(e) => return Err(internal(format!("adding node {id} as learner: {e}"))),
        }
        let mut voters: BTreeSet<u64> = self
            .members()
            .into_iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        voters.insert(id);
        match self.raft.change_membership(voters, false).await {
            Ok(_) => Ok(Route::Done(self.members())),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => forward_of(&f),
            Err(e) => Err(internal(format!("promoting node {id} to voter: {e}"))),
        }
    }

    /// Where to dial member `id`, advertised at `addr`: its `--peer-via` address if set.
    pub fn dial_addr(&self, id: u64, addr: &str) -> String {
        self.peer_via
            .get(&id)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// Where to dial the member advertised at `addr` (see [`Node::dial_addr`]).
    fn dial_advertised(&self, addr: &str) -> String {
        match self.members().into_iter().find(|m| m.addr == addr) {
            Some(m) => self.dial_addr(m.id, addr),
            None => addr.to_string(),
        }
    }

    /// Members as this node's Raft currently knows them.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// This node's report for `push status`.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let members = self.members();
        let is_voter = members.iter().any(|x| x.id == self.id && x.voter);
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Follower if is_voter => "follower",
            ServerState::Follower | ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let matched = m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
            .unwrap_or_default();
        let apps = self.runtime.apps();
        let usage = crate::procstat::ProcessUsage::current();
        let (heads, committed) = {
            let applier = self.state.read();
            (
                applier.state.code.heads(),
                applier.last_applied.map(|l| l.index),
            )
        };
        NodeStatus {
            id: self.id,
            addr: self.addr.clone(),
            role: role.to_string(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: committed,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            members,
            matched,
            heads,
            push_version: push_protocol::PUSH_VERSION.to_string(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            pid: std::process::id(),
            http: self.http.clone(),
            serving: apps
                .iter()
                .filter_map(|(a, s)| s.serving.map(|v| (a.clone(), v)))
                .collect(),
            load_errors: apps
                .iter()
                .filter_map(|(a, s)| s.error.clone().map(|(v, e)| (a.clone(), v, e)))
                .collect(),
            rss_bytes: usage.rss_bytes,
            cpu_ms: usage.cpu_ms,
            fd_limit: usage.fd_limit,
            fds_open: usage.fds_open,
        }
    }

    /// Runs `local` here, or forwards `op` to the leader, waiting out elections.
    pub async fn on_leader<F, Fut>(&self, op: &Op, hops: u8, local: F) -> Result<Reply, ErrorBody>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Route<Reply>, ErrorBody>>,
    {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            match local().await? {
                Route::Done(reply) => return Ok(reply),
                Route::Forward(Some(leader)) if leader.addr != self.addr => {
                    if hops >= MAX_HOPS {
                        return Err(ErrorBody::new(
                            ErrorCode::NoLeader,
                            "the request was forwarded too many times while leadership changed; retry",
                        ));
                    }
                    match self.forward(&leader.addr, op, hops + 1).await {
                        Ok(reply) => return Ok(reply),
                        Err(ForwardError::NotSent(reason)) if Instant::now() < deadline => {
                            tracing::debug!("forward to {} not sent: {reason}", leader.addr);
                        }
                        Err(ForwardError::NotSent(reason)) => {
                            return Err(ErrorBody::new(
                                ErrorCode::NoLeader,
                                format!("the leader at {} cannot be reached ({reason}); retry, or check `push status`", leader.addr),
                            ))
                        }
                        Err(ForwardError::Failed(body)) => return Err(body),
                    }
                }
                Route::Forward(_) if Instant::now() < deadline => {}
                Route::Forward(_) => {
                    return Err(ErrorBody::new(
                        ErrorCode::NoLeader,
                        format!(
                            "no leader was elected within {}s; a majority of nodes may be down — check `push status`",
                            LEADER_WAIT.as_secs()
                        ),
                    ))
                }
            }
            // Wait for a (new) leader to be known, briefly.
            let _ = self
                .raft
                .wait(Some(Duration::from_millis(200)))
                .metrics(
                    |m| {
                        m.current_leader.is_some_and(|l| l != self.id)
                            || m.state == ServerState::Leader
                    },
                    "leader known",
                )
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn forward(&self, advertised: &str, op: &Op, hops: u8) -> Result<Reply, ForwardError> {
        let dial = self.dial_advertised(advertised);
        let addr = dial.as_str();
        let client = {
            let mut leaders = self.leaders.lock().await;
            match leaders.get(addr) {
                Some(c) if !c.is_closed() => c.clone(),
                _ => {
                    let c = Arc::new(
                        Client::connect_as(addr, &self.token, crate::NODE_CLIENT)
                            .await
                            .map_err(|e| ForwardError::NotSent(e.to_string()))?,
                    );
                    leaders.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        let forwarded = Op::Forwarded {
            hops,
            op: Box::new(op.clone()),
        };
        let limit = forward_limit(op);
        let Ok(answer) = tokio::time::timeout(limit, client.call(forwarded)).await else {
            // A paused or cut-off leader: stop waiting; a new leader gets a new connection.
            self.leaders.lock().await.remove(addr);
            return Err(ForwardError::Failed(ErrorBody::new(
                ErrorCode::Unavailable,
                format!("the leader at {addr} did not answer within {} s; the outcome is unknown — check with a read before retrying, and `push status` for the cluster", limit.as_secs()),
            )));
        };
        match answer {
            Ok(reply) => Ok(reply),
            Err(ClientError::Server(body)) => Err(ForwardError::Failed(body)),
            Err(e) => {
                self.leaders.lock().await.remove(addr);
                Err(ForwardError::Failed(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!("lost the connection to the leader at {addr} while it handled the request ({e}); the outcome is unknown — check before retrying"),
                )))
            }
        }
    }
}

/// How long a follower waits for the leader to answer a forwarded request: long enough for
/// the slowest legitimate work (a deploy's import check, a join's catch-up, a queue take's own
/// wait), short enough that a paused or partitioned leader cannot hold a client forever.
fn forward_limit(op: &Op) -> Duration {
    match op {
        Op::Commit { .. } | Op::Join { .. } => Duration::from_secs(120),
        Op::Audited { op, .. } => forward_limit(op),
        Op::QueueTake { wait_ms, .. } => {
            Duration::from_millis(*wait_ms).saturating_add(Duration::from_secs(10))
        }
        _ => Duration::from_secs(10),
    }
}

enum ForwardError {
    /// Never reached the leader: safe to retry.
    NotSent(String),
    /// Reached it (or may have): report, do not retry.
    Failed(ErrorBody),
}
