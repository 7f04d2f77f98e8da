//! Users (`push user add/list/revoke/rotate`): the leader draws a new user's secret, proposes
//! only its hash, and answers with the secret this once. Changes arrive wrapped in
//! `Op::Audited` from the edge, so the change and its audit record are one log entry.

use push_protocol::{ErrorBody, ErrorCode, Op, Outcome, ReadMode, Reply, UserRole, UserSecret};

use super::leader::{self, Req};
use crate::clock::now_ms;
use crate::model::users::{hash_secret, User};
use crate::model::{Applied, CommandOp};
use crate::node::Route;

/// Longest user name.
const MAX_NAME: usize = 64;

/// Whether `op` is a user change (what [`change`] answers, bare or audited).
pub fn is_change(op: &Op) -> bool {
    match op {
        Op::UserAdd { .. } | Op::UserRevoke { .. } | Op::UserRotate { .. } => true,
        Op::Audited { op, .. } => is_change(op),
        _ => false,
    }
}

/// `UserList`: every user, never a secret or hash.
pub async fn list(req: &Req<'_>) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        Ok(Reply::Users(s.users.list()))
    })
    .await
}

/// Adds, rotates or revokes a user on the leader.
pub async fn change(req: &Req<'_>) -> Outcome {
    let (note, inner) = match req.op {
        Op::Audited { note, op } => (Some(note), op.as_ref()),
        op => (None, op),
    };
    let by = note.map_or_else(|| "the cluster".to_string(), |n| n.who.clone());
    let audited = |op: CommandOp| match note {
        Some(note) => CommandOp::Audited {
            note: note.clone(),
            op: Box::new(op),
        },
        None => op,
    };
    match inner {
        Op::UserAdd {
            name,
            role,
            apps,
            ttl_ms,
        } => {
            check_name(name)?;
            for app in apps {
                check_name(app).map_err(|e| {
                    ErrorBody::new(e.code, e.message.replacen("user name", "app name", 1))
                })?;
            }
            leader::run(req, || {
                let (secret, hash) = draw();
                let now = now_ms();
                let user = User {
                    name: name.clone(),
                    accessor: secret.accessor.clone(),
                    secret_hash: hash,
                    role: *role,
                    apps: apps.clone(),
                    expires_ms: ttl_ms.map(|t| now.saturating_add(t)),
                    created_ms: now,
                    created_by: by.clone(),
                };
                let info = user.info();
                let command = audited(CommandOp::UserAdd(Box::new(user)));
                async move { created(req, command, info, secret).await }
            })
            .await
        }
        Op::UserRotate { name } => {
            let Some(info) = req.node.read(|s| s.users.by_name(name).map(User::info)) else {
                return Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("no user called {name:?}; `push user list` shows them"),
                ));
            };
            leader::run(req, || {
                let (mut secret, hash) = draw();
                secret.accessor = info.accessor.clone();
                let command = audited(CommandOp::UserRotate {
                    name: name.clone(),
                    secret_hash: hash,
                    by: by.clone(),
                });
                let mut info = info.clone();
                info.created_by = by.clone();
                async move { created(req, command, info, secret).await }
            })
            .await
        }
        Op::UserRevoke { user } => {
            leader::write_command(req, audited(CommandOp::UserRevoke { user: user.clone() })).await
        }
        op => Err(ErrorBody::new(
            ErrorCode::Invalid,
            format!("not a user change: {op:?}"),
        )),
    }
}

/// Proposes a user's new secret hash and answers with the secret.
async fn created(
    req: &Req<'_>,
    command: CommandOp,
    user: push_protocol::UserInfo,
    secret: UserSecret,
) -> Result<Route<Reply>, ErrorBody> {
    Ok(match req.node.propose(command).await? {
        Route::Done((Applied::Failed(e), _)) => return Err(e),
        Route::Done(_) => Route::Done(Reply::UserSecret {
            user,
            secret: secret.to_string(),
        }),
        Route::Forward(leader) => Route::Forward(leader),
    })
}

/// A fresh secret (a 16-hex-digit accessor and 32 random bytes) and the hash nodes keep.
fn draw() -> (UserSecret, String) {
    use rand::RngCore;
    let hex = |n: usize| {
        let mut bytes = vec![0u8; n];
        rand::thread_rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let secret = UserSecret {
        accessor: hex(8),
        secret: hex(32),
    };
    let hash = hash_secret(&secret.secret);
    (secret, hash)
}

/// A user name: 1–64 letters, digits, `_`, `-`, `.` or `@`; not the bootstrap credential's.
fn check_name(name: &str) -> Result<(), ErrorBody> {
    let fine = |c: char| c.is_ascii_alphanumeric() || "_-.@".contains(c);
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fine) {
        return Err(ErrorBody::new(
            ErrorCode::Invalid,
            format!("user name {name:?} is not valid: use 1–{MAX_NAME} letters, digits, `_`, `-`, `.` or `@`"),
        ));
    }
    if name == crate::model::users::BOOTSTRAP {
        return Err(ErrorBody::new(
            ErrorCode::Invalid,
            format!("{name:?} names the cluster token; choose another user name"),
        ));
    }
    Ok(())
}

/// The role names as a user types them, for messages.
pub fn role_names() -> String {
    UserRole::ALL.map(UserRole::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("alice.b@example-1").is_ok());
        for bad in ["", "a b", "x/y", "cluster-token", &"a".repeat(65)] {
            assert_eq!(
                check_name(bad).unwrap_err().code,
                ErrorCode::Invalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_fresh_and_only_their_hash_is_kept() {
        let (a, hash) = draw();
        let (b, _) = draw();
        assert_ne!(a, b);
        assert_eq!(UserSecret::parse(&a.to_string()), Some(a.clone()));
        assert_eq!(hash, hash_secret(&a.secret));
        assert!(!hash.contains(&a.secret));
    }
}
