//! Each app's secrets and config (`push secret`, `push config`, Python's `push.secret` and
//! `push.config`): changes are proposed on the leader (wrapped with their audit note, which
//! names the entry, never a value); reads are linearizable, so the next read after a change
//! sees it, in running code too, without a deploy.

use push_protocol::{Op, Outcome, ReadMode, Reply};

use super::leader::{self, Req};
use crate::model::settings::SettingKind;

/// Whether `op` sets or removes a secret or config entry.
pub fn is_change(op: &Op) -> bool {
    matches!(op, Op::SecretSet { .. } | Op::ConfigSet { .. })
}

/// `Secrets`: names, who set them and when.
pub async fn secrets(req: &Req<'_>, app: &str) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        Ok(Reply::Settings(s.settings.list(app, SettingKind::Secret)))
    })
    .await
}

/// `SecretGet`: one secret's value (the edge lets only admins, and code on the node, ask).
pub async fn secret(req: &Req<'_>, app: &str, name: &str) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        Ok(Reply::Secret(
            s.settings.get(app, SettingKind::Secret, name).cloned(),
        ))
    })
    .await
}

/// `Config`: every config entry with its value.
pub async fn config(req: &Req<'_>, app: &str) -> Outcome {
    leader::read(req, ReadMode::Linearizable, |s| {
        Ok(Reply::Settings(s.settings.list(app, SettingKind::Config)))
    })
    .await
}
