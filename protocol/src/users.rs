//! Who may do what, as the wire carries it: the roles a user can hold ([`UserRole`]), a user
//! as `push user list` shows it ([`UserInfo`], never with its secret or hash), who a
//! connection is ([`Identity`]), and the shape of a user secret ([`UserSecret`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's role. Each role may do everything the roles before it may:
/// viewer < operator < deployer < developer < admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum UserRole {
    /// Status, top, logs, metrics, versions, diff, audit, reads of kv, queues, timeseries.
    Viewer,
    /// + kv, queue and timeseries writes, restarting daemons, membership.
    Operator,
    /// + deploy, activate, rollback.
    Deployer,
    /// + eval, hot-patch, lambdas, completion and inspection: running code as the node's OS user.
    Developer,
    /// + users.
    Admin,
}

impl UserRole {
    /// Every role, weakest first.
    pub const ALL: [UserRole; 5] = [
        UserRole::Viewer,
        UserRole::Operator,
        UserRole::Deployer,
        UserRole::Developer,
        UserRole::Admin,
    ];

    /// The name users type and messages show.
    pub fn name(self) -> &'static str {
        match self {
            UserRole::Viewer => "viewer",
            UserRole::Operator => "operator",
            UserRole::Deployer => "deployer",
            UserRole::Developer => "developer",
            UserRole::Admin => "admin",
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is none of the five.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}; roles are viewer, operator, deployer, developer and admin")]
pub struct UnknownRole(pub String);

impl FromStr for UserRole {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<UserRole, UnknownRole> {
        UserRole::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// A user as listed: no secret, no hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    /// The public half of the user's secret: names the user without revealing it.
    pub accessor: String,
    pub role: UserRole,
    /// The apps the role applies to; empty: every app.
    pub apps: Vec<String>,
    /// Milliseconds since the Unix epoch after which the secret is refused.
    pub expires_ms: Option<u64>,
    pub created_ms: u64,
    /// Who created (or last rotated) it, as the audit log names them.
    pub created_by: String,
}

/// Who a connection is, as its node authenticated it (`push status`, the REPL banner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user's name, or "cluster-token" for the bootstrap credential.
    pub user: String,
    pub role: UserRole,
    /// The apps the role applies to; empty: every app.
    pub apps: Vec<String>,
    pub expires_ms: Option<u64>,
    /// True for the cluster token (the bootstrap admin credential).
    pub bootstrap: bool,
}

impl Identity {
    /// Whether this identity's role covers `app` (an unscoped role covers every app).
    pub fn covers(&self, app: &str) -> bool {
        self.apps.is_empty() || self.apps.iter().any(|a| a == app)
    }

    /// "alice (deployer for shop, blog)", "cluster-token (admin)".
    pub fn describe(&self) -> String {
        if self.apps.is_empty() {
            format!("{} ({})", self.user, self.role)
        } else {
            format!("{} ({} for {})", self.user, self.role, self.apps.join(", "))
        }
    }
}

/// What a user presents in place of the cluster token: `push_ACCESSOR_SECRET`, where the
/// accessor (16 hex digits) finds the user and only the secret's SHA-256 is kept by nodes.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSecret {
    pub accessor: String,
    pub secret: String,
}

/// What every user secret starts with, so it is never mistaken for a cluster token.
pub const USER_SECRET_PREFIX: &str = "push_";

impl UserSecret {
    /// Parses `push_ACCESSOR_SECRET`; None for anything else (a cluster token, say).
    pub fn parse(text: &str) -> Option<UserSecret> {
        let rest = text.strip_prefix(USER_SECRET_PREFIX)?;
        let (accessor, secret) = rest.split_once('_')?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(accessor, 16) && hex(secret, 64)).then(|| UserSecret {
            accessor: accessor.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for UserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{USER_SECRET_PREFIX}{}_{}", self.accessor, self.secret)
    }
}

/// Never prints the secret half.
impl fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserSecret({}, ..)", self.accessor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse_by_name() {
        assert!(UserRole::Viewer < UserRole::Operator);
        assert!(UserRole::Developer < UserRole::Admin);
        for role in UserRole::ALL {
            assert_eq!(role.name().parse::<UserRole>().ok(), Some(role));
        }
        assert_eq!(
            "Deployer".parse::<UserRole>().ok(),
            Some(UserRole::Deployer)
        );
        let e = "root".parse::<UserRole>().unwrap_err().to_string();
        assert!(e.contains("viewer, operator"), "{e}");
    }

    #[test]
    fn secrets_round_trip_and_tokens_are_not_secrets() {
        let s = UserSecret {
            accessor: "0123456789abcdef".into(),
            secret: "ab".repeat(32),
        };
        assert_eq!(UserSecret::parse(&s.to_string()), Some(s.clone()));
        assert!(!format!("{s:?}").contains(&s.secret));
        assert_eq!(UserSecret::parse(&"ab".repeat(32)), None, "a cluster token");
        assert_eq!(UserSecret::parse("push_0123_ab"), None);
        assert_eq!(UserSecret::parse(""), None);
    }
}
