//! A running node and its primitives: propose a command, read the applied state (locally or
//! linearizably), learn where the leader is, forward an op to it or ask another member
//! ([`peers`]), join, promote and remove members ([`membership`]).
//!
//! **Architecture Invariant:** the node knows no request families and calls nothing above
//! it. Routing a request (which primitive, forward or not) is the `ops` layer's job; putting
//! a node together from its config is `crate::assemble`'s.

pub mod audit;
pub mod batch;
pub mod membership;
pub mod peers;
pub mod quorum;
pub mod reads;
pub mod reload;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ServerState};
use push_protocol::{Client, ErrorBody, ErrorCode, Member, NodeInfo, NodeStatus};

use crate::clock::now_ms;
use crate::consensus::{Raft, SharedState};
use crate::model::{Applied, CommandOp, State};
use crate::workers::Pool;

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
    pub workers: Arc<Pool>,
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
    /// The Python worker processes that run the app's code.
    pub workers: Arc<Pool>,
    /// Where app HTTP handlers are served, if anywhere.
    pub http: Option<String>,
    /// Peer id -> address to dial it at instead of its advertised one (`--peer-via`).
    pub peer_via: BTreeMap<u64, String>,
    started: Instant,
    /// Cached client connections to other members, by dial address.
    peers: tokio::sync::Mutex<HashMap<String, Arc<Client>>>,
    membership: tokio::sync::Mutex<()>,
    /// Audit notes of evals and lambdas waiting to be proposed.
    pub audit: audit::Recorder,
    /// Group commit of small client writes.
    batcher: batch::Batcher,
    /// Leadership confirmations shared by concurrent linearizable reads.
    reads: reads::ReadBarrier,
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
            workers,
            http,
            peer_via,
        } = parts;
        Node {
            id,
            addr,
            batcher: batch::Batcher::start(raft.clone()),
            raft,
            state,
            token,
            workers,
            http,
            peer_via,
            started: Instant::now(),
            peers: tokio::sync::Mutex::new(HashMap::new()),
            membership: tokio::sync::Mutex::new(()),
            audit: Default::default(),
            reads: Default::default(),
        }
    }

    /// Whether this node is the leader right now (by its own view).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The bytes of the files of `tree` (path -> blob hash): small ones from the state, the
    /// others from this node's blob files off the async threads, each checked against its hash.
    pub async fn read_files(
        &self,
        tree: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, push_protocol::ByteBuf>, ErrorBody> {
        let shared = self.state.clone();
        tokio::task::spawn_blocking(move || {
            shared
                .read_tree(tree)
                .map_err(|(path, e)| ErrorBody::new(ErrorCode::Unavailable, format!("{path}: {e}")))
        })
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
    }

    /// A file on this node for each of `files` (name, blob hash), for what needs a path (a
    /// wheel to install, a binary file to link): the blob's file, written out first for a
    /// small blob the state holds. The error names the file.
    pub async fn blob_files(
        &self,
        files: Vec<(String, String)>,
    ) -> Result<Vec<(String, std::path::PathBuf)>, ErrorBody> {
        let shared = self.state.clone();
        tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(name, hash)| {
                    shared
                        .blob_file(&hash)
                        .map(|path| (name.clone(), path))
                        .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, format!("{name}: {e}")))
                })
                .collect()
        })
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
    }

    /// Reads the applied state under a short lock.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().state)
    }

    /// Proposes a command on this node; `Forward` when it is not the leader. Small client
    /// writes go through the group commit ([`batch`]), the rest on their own.
    pub async fn propose(&self, op: CommandOp) -> Result<Route<(Applied, u64)>, ErrorBody> {
        let write = async {
            if batch::batchable(&op) {
                let size = push_protocol::codec::encode(&op).map_or(usize::MAX, |b| b.len());
                if size <= batch::SOLO_BYTES {
                    return self.batcher.propose(op, size).await;
                }
            }
            batch::write_one(&self.raft, op).await
        };
        tokio::pin!(write);
        // A leader that lost its majority would wait for it forever: while the write waits,
        // check now and then, and say so once the other voters do not answer.
        // The first check is due after one period: awaiting an interval's immediate first
        // tick costs a timer-wheel turn (about 1 ms), which every write would pay.
        let period = Duration::from_millis(500);
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                result = &mut write => return result,
                _ = check.tick() => {
                    if !self.leader_without_quorum() {
                        continue;
                    }
                    if let Some(lost) = self.quorum_lost().await {
                        return Err(ErrorBody::new(
                            ErrorCode::Unavailable,
                            format!("{lost}; this write was not acknowledged and takes effect only if enough voters come back, so check before retrying"),
                        ));
                    }
                }
            }
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

    /// Confirms leadership with a quorum so that a local read is linearizable. Concurrent
    /// reads share rounds ([`reads`]).
    ///
    /// One round of confirmations can miss its 100 ms deadline on a busy machine (a peer busy
    /// importing a 10,000-module deploy, say), so a failed round is retried, up to
    /// [`LINEARIZABLE_ATTEMPTS`] rounds, before the client hears "unavailable".
    pub async fn linearizable(&self) -> Result<Route<()>, ErrorBody> {
        let mut attempt = 1;
        loop {
            let round = self
                .reads
                .confirmed(|| async { self.raft.ensure_linearizable().await.map(|_| ()) });
            match round.await {
                Ok(()) => return Ok(Route::Done(())),
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
        let is_member = members.iter().any(|x| x.id == self.id);
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Follower if is_voter => "follower",
            // Removed, or not yet joined: it takes no part until it is added.
            ServerState::Follower | ServerState::Learner if !is_member => "non-member",
            ServerState::Follower | ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let matched = m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
            .unwrap_or_default();
        let apps = self.workers.apps();
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
            python_version: self.workers.python_version(),
            fd_limit: usage.fd_limit,
            fds_open: usage.fds_open,
            format_version: push_protocol::format::highest(),
            min_format_version: push_protocol::MIN_FORMAT_VERSION,
            workers: self.workers.rows(),
        }
    }

    /// Waits for a leader to be known, when a request found none or could not reach the one
    /// it knew (`unreachable`, its address): until Raft reports a leader other than that one,
    /// or this node leads — a hint from Raft's own state, not polling — then 20 ms more for
    /// the new leader to settle. Bounded: 200 ms when no leader was known, 1 s otherwise.
    pub async fn wait_for_leader(&self, unreachable: Option<&str>) {
        let bound = Duration::from_millis(if unreachable.is_some() { 1000 } else { 200 });
        let _ = self
            .raft
            .wait(Some(bound))
            .metrics(
                |m| {
                    if m.state == ServerState::Leader {
                        return true;
                    }
                    let Some(leader) = m.current_leader.filter(|l| *l != self.id) else {
                        return false;
                    };
                    let addr = m
                        .membership_config
                        .membership()
                        .get_node(&leader)
                        .map(|n| n.addr.as_str());
                    unreachable.is_none() || addr != unreachable
                },
                "a reachable leader known",
            )
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// The live nodes work may be placed on: members the registry heard from recently.
    pub fn live_nodes(&self) -> Vec<NodeInfo> {
        let members: Vec<u64> = self.members().into_iter().map(|m| m.id).collect();
        let now = now_ms();
        self.read(|s| {
            s.nodes
                .live(now)
                .filter(|r| members.contains(&r.info.id))
                .map(|r| r.info.clone())
                .collect()
        })
    }
}

/// Counts leader changes as this node sees them, until the Raft metrics channel closes.
/// Watches the server metrics (vote, role, leader, membership), which change only with
/// those: the full metrics change with every write, and a watcher of them wakes per write.
pub async fn watch_leader(node: std::sync::Arc<Node>) {
    let mut rx = node.raft.server_metrics();
    let mut leader = rx.borrow().current_leader;
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader;
        if now != leader {
            leader = now;
            crate::metrics::metrics().leader_changes.inc();
        }
    }
}
