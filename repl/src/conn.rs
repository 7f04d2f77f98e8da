//! The REPL's link to the cluster: the current node, its session, and blocking calls made
//! from reedline's synchronous callbacks through a tokio handle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_protocol::{Client, ClientError, ErrorCode, Identity, Member, NodeStatus, Op, Reply};
use tokio::runtime::Handle;

use crate::error::ReplError;

/// Mutable link state.
#[derive(Default)]
struct Link {
    addr: String,
    client: Option<Arc<Client>>,
    session: Option<u64>,
    status: Option<NodeStatus>,
    /// The cluster's members as last seen, kept when the current node dies.
    members: Vec<Member>,
    /// `:in MODULE`: evaluate inside this module's namespace.
    module: Option<String>,
    /// Who the node says this connection is (None from a node too old to say).
    me: Option<Identity>,
    /// `:use ID/W` or `:use ID/POOL/W`: open the session on the node's Python worker W (of
    /// app pool POOL).
    worker: Option<(Option<String>, u32)>,
    /// `:pm ID`: the failure being looked at and the chosen frame; plain input evaluates
    /// in that frame until the view is left.
    pm: Option<(String, u32)>,
}

/// Shared by the loop, the completer and the validator.
pub struct Conn {
    token: String,
    handle: Handle,
    link: Mutex<Link>,
}

impl Conn {
    pub fn new(addr: String, token: String, handle: Handle) -> Conn {
        Conn {
            token,
            handle,
            link: Mutex::new(Link {
                addr,
                ..Default::default()
            }),
        }
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (Re)connects to the current address and opens a session there.
    pub fn connect(&self) -> Result<(), ReplError> {
        self.leave_session();
        let addr = self.link().addr.clone();
        let token = self.token.clone();
        let client = self.handle.block_on(Client::connect(&addr, &token))?;
        let client = Arc::new(client);
        // A user whose role may not run code still gets the meta commands: no session.
        let open = match self.link().worker.clone() {
            Some((pool, worker)) => Op::SessionOpenOn { worker, pool },
            None => Op::SessionOpen,
        };
        let session = match self.handle.block_on(client.call(open)) {
            Ok(Reply::Session { id }) => Some(id),
            Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => None,
            Err(e) => return Err(e.into()),
            Ok(other) => return Err(ReplError::Unexpected(format!("{other:?}"))),
        };
        let me = match self.handle.block_on(client.call(Op::WhoAmI)) {
            Ok(Reply::WhoAmI(me)) => Some(me),
            _ => None,
        };
        {
            let mut link = self.link();
            link.client = Some(client);
            link.session = session;
            link.me = me;
        }
        self.refresh();
        Ok(())
    }

    /// Closes the session being left (best effort, 1 s), so its worker does not keep its names.
    fn leave_session(&self) {
        let (client, session) = {
            let mut link = self.link();
            (link.client.clone(), link.session.take())
        };
        if let (Some(client), Some(session)) = (client, session) {
            let close = client.call(Op::SessionClose { session });
            let _ = self
                .handle
                .block_on(async { tokio::time::timeout(Duration::from_secs(1), close).await });
        }
    }

    /// Switches to another address (keeping the member list), connecting there, with the
    /// session on Python worker `worker` of that node if given.
    pub fn use_addr(
        &self,
        addr: String,
        worker: Option<(Option<String>, u32)>,
    ) -> Result<(), ReplError> {
        self.leave_session();
        {
            let mut link = self.link();
            link.addr = addr;
            link.worker = worker;
            link.client = None;
            link.session = None;
            link.status = None;
        }
        self.connect()
    }

    /// Re-reads the current node's status (role, HEAD, members) for the prompt.
    pub fn refresh(&self) {
        if let Ok(Reply::Status(s)) = self.call_timeout(Op::Status, Duration::from_secs(2)) {
            let mut link = self.link();
            link.members = s.members.clone();
            link.status = Some(*s);
        } else {
            self.link().status = None;
        }
    }

    pub fn client(&self) -> Option<Arc<Client>> {
        self.link().client.clone()
    }

    pub fn session(&self) -> Option<u64> {
        self.link().session
    }

    pub fn addr(&self) -> String {
        self.link().addr.clone()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub fn status(&self) -> Option<NodeStatus> {
        self.link().status.clone()
    }

    pub fn members(&self) -> Vec<Member> {
        self.link().members.clone()
    }

    /// Who the node says this connection is.
    pub fn me(&self) -> Option<Identity> {
        self.link().me.clone()
    }

    pub fn module(&self) -> Option<String> {
        self.link().module.clone()
    }

    pub fn set_module(&self, module: Option<String>) {
        self.link().module = module;
    }

    /// The post-mortem view's failure id and frame (`:pm`, `:frame`), if one is open.
    pub fn pm(&self) -> Option<(String, u32)> {
        self.link().pm.clone()
    }

    pub fn set_pm(&self, pm: Option<(String, u32)>) {
        self.link().pm = pm;
    }

    /// Marks the link dead (after a failed call) so the prompt says so.
    pub fn lost(&self) {
        let mut link = self.link();
        link.client = None;
        link.status = None;
    }

    /// One call with a deadline; a dead link is an error naming the fix.
    pub fn call_timeout(&self, op: Op, timeout: Duration) -> Result<Reply, ReplError> {
        let Some(client) = self.client() else {
            return Err(ReplError::NotConnected { addr: self.addr() });
        };
        let result = self
            .handle
            .block_on(async { tokio::time::timeout(timeout, client.call(op)).await });
        match result {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                if e.code().is_none() {
                    self.lost();
                    let members: Vec<String> =
                        self.members().iter().map(|m| m.id.to_string()).collect();
                    return Err(ReplError::Unreachable {
                        error: e,
                        members: members.join(", "),
                    });
                }
                Err(ReplError::Node(e))
            }
            Err(_) => Err(ReplError::Timeout(timeout)),
        }
    }
}
