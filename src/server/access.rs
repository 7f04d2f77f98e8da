//! Who may do what, checked once at the edge: [`authenticate`] turns a hello's credential into
//! a [`Principal`] (the cluster token, or a user's secret), and [`authorize`] checks every
//! request against the users table as applied on this node, before anything runs, by the one
//! table from each [`Op`] to the role it needs ([`required`], in push-protocol, which the
//! deploy gate's read-only rule shares). [`scope_reply`] trims a listing of
//! every app's queues, series or daemons to the apps a scoped user's role covers.
//!
//! The cluster token is the bootstrap admin credential and what nodes present to each other,
//! so a request forwarded between nodes is not checked again: the node that took it from the
//! person checked it, and its audit note names them.

pub use push_protocol::access::{required, Need};
use push_protocol::{
    realm, ErrorBody, ErrorCode, Identity, Op, Reply, Role, UserRole, UserSecret, DEFAULT_APP,
};

use super::auth;
use crate::clock::now_ms;
use crate::model::users::{hash_secret, User, BOOTSTRAP};
use crate::node::Node;

/// Who a connection authenticated as.
#[derive(Clone)]
pub enum Principal {
    /// The cluster token: the bootstrap admin, and every node talking to another.
    ClusterToken,
    /// A user; `hash` is the SHA-256 of the secret it presented, compared on every request
    /// so that a rotate refuses the old secret on open connections too.
    User { accessor: String, hash: String },
}

/// The app an op acts on, for a user whose role is scoped to apps. A kv map, queue or
/// timeseries belongs to the app whose realm its name is in ([`realm::split`]).
fn app_of(op: &Op) -> Option<&str> {
    match op {
        Op::Commit { app, .. }
        | Op::Versions { app }
        | Op::Activate { app, .. }
        | Op::Diff { app, .. }
        | Op::Files { app, .. }
        | Op::FileSizes { app, .. }
        | Op::FilePart { app, .. }
        | Op::SecretSet { app, .. }
        | Op::Secrets { app }
        | Op::SecretGet { app, .. }
        | Op::ConfigSet { app, .. }
        | Op::Config { app }
        | Op::Publish { app, .. } => Some(app),
        Op::KvGet { map, .. }
        | Op::KvList { map, .. }
        | Op::KvSet { map, .. }
        | Op::KvDelete { map, .. }
        | Op::KvCas { map, .. } => Some(realm::split(map).0),
        Op::QueuePut { queue, .. }
        | Op::QueueTake { queue, .. }
        | Op::QueueAck { queue, .. }
        | Op::QueuePeek { queue, .. } => Some(realm::split(queue).0),
        Op::TsAppend { series, .. } | Op::TsRange { series, .. } => Some(realm::split(series).0),
        Op::Restart { app, .. } | Op::Tail { app, .. } => {
            Some(app.as_deref().unwrap_or(DEFAULT_APP))
        }
        _ => None,
    }
}

/// Checks a hello's credential. A peer (Raft) connection must present the cluster token.
pub fn authenticate(node: &Node, token: &str, role: Role) -> Result<Principal, ErrorBody> {
    if auth::token_matches(token, &node.token) {
        return Ok(Principal::ClusterToken);
    }
    let refused = |m: String| ErrorBody::new(ErrorCode::Unauthorized, m);
    let Some(secret) = UserSecret::parse(token) else {
        return Err(refused("wrong or missing cluster token; pass --token, set PUSH_TOKEN, run from the directory holding `.push/token`, or `push login` with a user secret".into()));
    };
    if role == Role::Peer {
        return Err(refused(
            "a node must present the cluster token, not a user secret".into(),
        ));
    }
    let principal = Principal::User {
        accessor: secret.accessor,
        hash: hash_secret(&secret.secret),
    };
    check_user(node, &principal).map(|_| principal)
}

/// The user behind `principal` as this node's users table has it now; refused when it was
/// revoked, its secret rotated, or it expired.
fn check_user(node: &Node, principal: &Principal) -> Result<Option<User>, ErrorBody> {
    let Principal::User { accessor, hash } = principal else {
        return Ok(None);
    };
    let refused = |m: String| ErrorBody::new(ErrorCode::Unauthorized, m);
    let user = node.read(|s| s.users.get(accessor).cloned());
    let Some(user) = user else {
        return Err(refused(format!("no user has the accessor {accessor} (revoked, or never created); ask an admin for a secret and run `push login`")));
    };
    if !auth::token_matches(hash, &user.secret_hash) {
        return Err(refused(format!(
            "this secret for user {} was replaced by `push user rotate`; run `push login` with the new one",
            user.name
        )));
    }
    if let Some(expires) = user.expires_ms {
        let now = now_ms();
        if now >= expires {
            return Err(refused(format!(
                "user {} expired {} s ago; ask an admin for a new user (`push user add`)",
                user.name,
                (now - expires) / 1000
            )));
        }
    }
    Ok(Some(user))
}

/// Sets a debug request's app scope from who sent it: a user sees only the failures and
/// modules of the apps their role covers. Between nodes (the cluster token) the scope the
/// first node set travels unchanged.
pub fn scope_request(principal: &Principal, identity: &Identity, op: &mut Op) {
    if let (Principal::User { .. }, Op::Debug { scope, .. }) = (principal, op) {
        *scope = identity.apps.clone();
    }
}

/// Checks one request before anything runs: who the connection is now (a revoke, rotate or
/// expiry applies to open connections too), and whether their role allows `op`.
pub fn authorize(node: &Node, principal: &Principal, op: &Op) -> Result<Identity, ErrorBody> {
    let Some(user) = check_user(node, principal)? else {
        return Ok(bootstrap());
    };
    let identity = Identity {
        user: user.name.clone(),
        role: user.role,
        apps: user.apps.clone(),
        expires_ms: user.expires_ms,
        bootstrap: false,
    };
    let what = crate::metrics::op_kind(op);
    let forbidden = |m: String| Err(ErrorBody::new(ErrorCode::Forbidden, m));
    match required(op) {
        Need::ClusterToken => forbidden(format!(
            "`{what}` is sent between nodes and needs the cluster token; {} cannot send it",
            identity.describe()
        )),
        Need::Role(need) if user.role < need => forbidden(format!(
            "`{what}` needs the {need} role; you are {}. Ask an admin for a user with the {need} role",
            identity.describe()
        )),
        Need::Role(need) => match app_of(op) {
            Some(app) if !user.covers(app) => forbidden(format!(
                "`{what}` on app {app:?} needs the {need} role on that app; you are {}",
                identity.describe()
            )),
            _ => Ok(identity),
        },
    }
}

/// A reply as `identity` may see it: the cluster-wide listings (`QueueStats`, `TsStats`,
/// `Daemons`) keep only the apps a scoped role covers, so a user of one app learns neither
/// the names nor the sizes of another app's queues and series. Everything else is unchanged
/// (requests naming one app were checked against it by [`authorize`]).
pub fn scope_reply(identity: &Identity, reply: Reply) -> Reply {
    if identity.apps.is_empty() {
        return reply;
    }
    let mine = |stored: &str| identity.covers(realm::split(stored).0);
    match reply {
        Reply::QueueStats(stats) => {
            Reply::QueueStats(stats.into_iter().filter(|q| mine(&q.name)).collect())
        }
        Reply::TsStats(stats) => {
            Reply::TsStats(stats.into_iter().filter(|s| mine(&s.name)).collect())
        }
        Reply::Daemons(rows) => Reply::Daemons(
            rows.into_iter()
                .filter(|d| identity.covers(&d.app))
                .collect(),
        ),
        other => other,
    }
}

/// The cluster token's identity: the bootstrap admin.
pub fn bootstrap() -> Identity {
    Identity {
        user: BOOTSTRAP.to_string(),
        role: UserRole::Admin,
        apps: vec![],
        expires_ms: None,
        bootstrap: true,
    }
}

/// The name the audit log records for a principal: the user's name (authenticated), not
/// what the client claims.
pub fn user_name(node: &Node, principal: &Principal) -> String {
    match principal {
        Principal::ClusterToken => BOOTSTRAP.to_string(),
        Principal::User { accessor, .. } => node
            .read(|s| s.users.get(accessor).map(|u| u.name.clone()))
            .unwrap_or_else(|| accessor.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_orders_roles() {
        assert_eq!(required(&Op::Status), Need::Role(UserRole::Viewer));
        assert_eq!(
            required(&Op::QueuePut {
                queue: "q".into(),
                values: vec![]
            }),
            Need::Role(UserRole::Operator)
        );
        assert_eq!(
            required(&Op::Activate {
                app: "a".into(),
                version: None
            }),
            Need::Role(UserRole::Deployer)
        );
        assert_eq!(
            required(&Op::Eval {
                session: None,
                code: "1".into(),
                module: None
            }),
            Need::Role(UserRole::Developer)
        );
        assert_eq!(required(&Op::UserList), Need::Role(UserRole::Admin));
        assert_eq!(required(&Op::AuditRecord(vec![])), Need::ClusterToken);
    }

    #[test]
    fn scoped_ops_name_their_app() {
        let restart = Op::Restart {
            app: None,
            name: "d".into(),
        };
        assert_eq!(app_of(&restart), Some(DEFAULT_APP));
        assert_eq!(app_of(&Op::Versions { app: "shop".into() }), Some("shop"));
        assert_eq!(app_of(&Op::Status), None);
        let shop_kv = Op::KvGet {
            map: realm::qualify("shop", "carts").unwrap(),
            key: "k".into(),
            read: push_protocol::ReadMode::Stale,
        };
        assert_eq!(app_of(&shop_kv), Some("shop"));
        let main_queue = Op::QueuePeek {
            queue: "jobs".into(),
            n: 1,
        };
        assert_eq!(app_of(&main_queue), Some(DEFAULT_APP));
        let publish = Op::Publish {
            app: "shop".into(),
            channel: "news".into(),
            data: "x".into(),
        };
        assert_eq!(app_of(&publish), Some("shop"));
        assert_eq!(required(&publish), Need::Role(UserRole::Operator));
    }
}
