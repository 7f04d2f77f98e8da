//! The replicated users table: per user an accessor id, the SHA-256 of its secret (never the
//! secret), its name, role, app scope and expiry. Nodes check every request against it, so
//! a revoke or rotate applies on every node as soon as the entry is applied there.

use std::collections::BTreeMap;

use push_protocol::{ErrorBody, ErrorCode, UserInfo, UserRole};
use serde::{Deserialize, Serialize};

/// The name the cluster token (the bootstrap admin credential) goes by; no user may take it.
pub const BOOTSTRAP: &str = "cluster-token";

/// One user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub accessor: String,
    /// Hex SHA-256 of the secret half of the user's secret.
    pub secret_hash: String,
    pub role: UserRole,
    /// Empty: every app.
    pub apps: Vec<String>,
    pub expires_ms: Option<u64>,
    pub created_ms: u64,
    pub created_by: String,
}

impl User {
    /// The user as listed: everything but the hash.
    pub fn info(&self) -> UserInfo {
        UserInfo {
            name: self.name.clone(),
            accessor: self.accessor.clone(),
            role: self.role,
            apps: self.apps.clone(),
            expires_ms: self.expires_ms,
            created_ms: self.created_ms,
            created_by: self.created_by.clone(),
        }
    }

    /// Whether the role covers `app` (an unscoped user covers every app).
    pub fn covers(&self, app: &str) -> bool {
        self.apps.is_empty() || self.apps.iter().any(|a| a == app)
    }
}

/// Every user, by accessor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Users {
    by_accessor: BTreeMap<String, User>,
}

impl Users {
    pub fn get(&self, accessor: &str) -> Option<&User> {
        self.by_accessor.get(accessor)
    }

    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.by_accessor.values().find(|u| u.name == name)
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<UserInfo> {
        let mut users: Vec<UserInfo> = self.by_accessor.values().map(User::info).collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// Adds a user; refused when the name or the accessor is taken.
    pub fn add(&mut self, user: User) -> Result<(), ErrorBody> {
        if self.by_name(&user.name).is_some() {
            return Err(ErrorBody::new(
                ErrorCode::Invalid,
                format!(
                    "a user called {:?} exists; `push user rotate {}` gives it a new secret, `push user revoke {}` removes it",
                    user.name, user.name, user.name
                ),
            ));
        }
        if self.by_accessor.contains_key(&user.accessor) {
            return Err(ErrorBody::new(
                ErrorCode::Invalid,
                "that accessor is taken; retry (a new one is drawn each time)",
            ));
        }
        self.by_accessor.insert(user.accessor.clone(), user);
        Ok(())
    }

    /// Replaces user `name`'s secret hash; the old secret is refused from then on.
    pub fn rotate(
        &mut self,
        name: &str,
        secret_hash: &str,
        time_ms: u64,
        by: &str,
    ) -> Result<(), ErrorBody> {
        let user = self
            .by_accessor
            .values_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| no_such_user(name))?;
        user.secret_hash = secret_hash.to_string();
        user.created_ms = time_ms;
        user.created_by = by.to_string();
        Ok(())
    }

    /// Removes the user whose name or accessor is `who`; returns its name.
    pub fn revoke(&mut self, who: &str) -> Result<String, ErrorBody> {
        let accessor = self
            .by_accessor
            .values()
            .find(|u| u.name == who || u.accessor == who)
            .map(|u| u.accessor.clone())
            .ok_or_else(|| no_such_user(who))?;
        Ok(self
            .by_accessor
            .remove(&accessor)
            .map(|u| u.name)
            .unwrap_or_default())
    }
}

/// The hex SHA-256 nodes keep of a user's secret half.
pub fn hash_secret(secret: &str) -> String {
    super::code_store::blob_hash(secret.as_bytes())
}

fn no_such_user(who: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotFound,
        format!("no user with the name or accessor {who:?}; `push user list` shows them"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, accessor: &str) -> User {
        User {
            name: name.into(),
            accessor: accessor.into(),
            secret_hash: "h1".into(),
            role: UserRole::Operator,
            apps: vec![],
            expires_ms: None,
            created_ms: 1,
            created_by: "admin".into(),
        }
    }

    #[test]
    fn add_rotate_revoke() {
        let mut users = Users::default();
        users.add(user("alice", "a1")).expect("add");
        let e = users.add(user("alice", "a2")).unwrap_err();
        assert!(
            e.message.contains("push user rotate alice"),
            "{}",
            e.message
        );
        assert!(users.add(user("bob", "a1")).is_err(), "accessor taken");
        users.rotate("alice", "h2", 5, "root").expect("rotate");
        assert_eq!(users.get("a1").map(|u| u.secret_hash.as_str()), Some("h2"));
        assert_eq!(
            users.rotate("nobody", "h", 5, "root").unwrap_err().code,
            ErrorCode::NotFound
        );
        users.add(user("bob", "b1")).expect("add");
        assert_eq!(users.revoke("b1").expect("by accessor"), "bob");
        assert_eq!(users.revoke("alice").expect("by name"), "alice");
        assert!(users.list().is_empty());
        assert_eq!(users.revoke("alice").unwrap_err().code, ErrorCode::NotFound);
    }

    #[test]
    fn scope() {
        let mut u = user("a", "x");
        assert!(u.covers("shop"));
        u.apps = vec!["shop".into()];
        assert!(u.covers("shop"));
        assert!(!u.covers("blog"));
    }
}
