//! Each app's secrets and config: named strings, with who set them and when. Secret values
//! are kept here (replicated, in snapshots) and read only by the app's own code and admins;
//! lists carry names, never secret values.

use std::collections::BTreeMap;

use push_protocol::{ErrorBody, ErrorCode, SecretText, SettingInfo};
use serde::{Deserialize, Serialize};

/// Most bytes a secret or config value may hold.
pub const MAX_VALUE: usize = 64 * 1024;
/// Most secrets, and apart most config entries, an app may hold.
pub const MAX_ENTRIES: usize = 1000;

/// One secret or config entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub value: SecretText,
    pub set_by: String,
    pub set_ms: u64,
}

/// One app's secrets and config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSettings {
    pub secrets: BTreeMap<String, Setting>,
    pub config: BTreeMap<String, Setting>,
}

/// Every app's secrets and config, by app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    apps: BTreeMap<String, AppSettings>,
}

/// Which of an app's two tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettingKind {
    Secret,
    Config,
}

impl SettingKind {
    pub fn noun(self) -> &'static str {
        match self {
            SettingKind::Secret => "secret",
            SettingKind::Config => "config entry",
        }
    }
}

impl Settings {
    fn table(&self, app: &str, kind: SettingKind) -> Option<&BTreeMap<String, Setting>> {
        let app = self.apps.get(app)?;
        Some(match kind {
            SettingKind::Secret => &app.secrets,
            SettingKind::Config => &app.config,
        })
    }

    /// The value of one entry.
    pub fn get(&self, app: &str, kind: SettingKind, name: &str) -> Option<&SecretText> {
        Some(&self.table(app, kind)?.get(name)?.value)
    }

    /// Every entry of one table, by name; secret values left out.
    pub fn list(&self, app: &str, kind: SettingKind) -> Vec<SettingInfo> {
        self.table(app, kind)
            .into_iter()
            .flatten()
            .map(|(name, s)| SettingInfo {
                name: name.clone(),
                value: (kind == SettingKind::Config).then(|| s.value.0.clone()),
                set_by: s.set_by.clone(),
                set_ms: s.set_ms,
            })
            .collect()
    }

    /// Sets an entry, or removes it when `value` is None (saying whether it existed).
    pub fn set(
        &mut self,
        app: &str,
        kind: SettingKind,
        name: &str,
        value: Option<&SecretText>,
        set_by: &str,
        time_ms: u64,
    ) -> Result<bool, ErrorBody> {
        let invalid = |m: String| Err(ErrorBody::new(ErrorCode::Invalid, m));
        let noun = kind.noun();
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return invalid(format!(
                "a {noun} name must be 1 to 256 printable characters"
            ));
        }
        if let Some(value) = value.filter(|v| v.0.len() > MAX_VALUE) {
            return invalid(format!(
                "the value of {noun} {name:?} is {} bytes; at most {MAX_VALUE} bytes fit",
                value.0.len()
            ));
        }
        let entry = self.apps.entry(app.to_string()).or_default();
        let table = match kind {
            SettingKind::Secret => &mut entry.secrets,
            SettingKind::Config => &mut entry.config,
        };
        let existed = match value {
            None => table.remove(name).is_some(),
            Some(value) => {
                if !table.contains_key(name) && table.len() >= MAX_ENTRIES {
                    return invalid(format!(
                        "app {app:?} holds {MAX_ENTRIES} {noun}s already; remove one first"
                    ));
                }
                let setting = Setting {
                    value: value.clone(),
                    set_by: set_by.to_string(),
                    set_ms: time_ms,
                };
                table.insert(name.to_string(), setting).is_some()
            }
        };
        if entry.secrets.is_empty() && entry.config.is_empty() {
            self.apps.remove(app);
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_list_without_values_and_config_with() {
        let mut s = Settings::default();
        let key = SecretText("sk-123".into());
        s.set(
            "shop",
            SettingKind::Secret,
            "API_KEY",
            Some(&key),
            "alice",
            5,
        )
        .unwrap();
        s.set(
            "shop",
            SettingKind::Config,
            "mode",
            Some(&SecretText("fast".into())),
            "bob",
            6,
        )
        .unwrap();
        assert_eq!(s.get("shop", SettingKind::Secret, "API_KEY"), Some(&key));
        assert_eq!(s.get("main", SettingKind::Secret, "API_KEY"), None);
        let secrets = s.list("shop", SettingKind::Secret);
        assert_eq!(secrets[0].value, None);
        assert_eq!(secrets[0].set_by, "alice");
        assert!(!format!("{s:?}").contains("sk-123"), "Debug hides values");
        assert_eq!(
            s.list("shop", SettingKind::Config)[0].value.as_deref(),
            Some("fast")
        );
        assert!(s
            .set("shop", SettingKind::Secret, "API_KEY", None, "alice", 7)
            .unwrap());
        assert!(!s
            .set("shop", SettingKind::Secret, "API_KEY", None, "alice", 7)
            .unwrap());
    }

    #[test]
    fn bad_names_and_huge_values_are_refused_and_change_nothing() {
        let mut s = Settings::default();
        let e = s
            .set(
                "a",
                SettingKind::Secret,
                "",
                Some(&SecretText("v".into())),
                "x",
                0,
            )
            .unwrap_err();
        assert!(e.message.contains("1 to 256"), "{}", e.message);
        let big = SecretText("v".repeat(MAX_VALUE + 1));
        let e = s
            .set("a", SettingKind::Config, "k", Some(&big), "x", 0)
            .unwrap_err();
        assert!(e.message.contains("at most"), "{}", e.message);
        assert_eq!(s, Settings::default());
    }
}
