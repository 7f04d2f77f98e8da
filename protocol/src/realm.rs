//! Realms: every app's kv maps, queues and timeseries live in the app's own namespace.
//!
//! A realm is a naming rule over the one replicated state, shared by every front end and the
//! node: the name `orders` in app `shop` is stored as `shop` + [`SEPARATOR`] + `orders`, and
//! the default app's names stay as they are, so data written before realms existed (every
//! format-2 data dir) is app `main`'s, where it always was. The node reads a name's app with
//! [`split`] to check a role scoped to apps; clients qualify names with [`qualify`].

use crate::DEFAULT_APP;

/// Separates an app from a name inside a qualified name (the ASCII unit separator, which no
/// one types into a name).
pub const SEPARATOR: char = '\u{1f}';

/// A name or app that cannot be used in a realm.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RealmError {
    #[error("the app name is empty; name an app (the default app is {DEFAULT_APP:?})")]
    EmptyApp,
    #[error("{what} {name:?} contains a control character; use printable characters only")]
    Control { what: &'static str, name: String },
}

/// The stored name of `name` in `app`'s realm; refused when either holds a control character
/// (the separator among them), so no name can reach into another app's realm.
pub fn qualify(app: &str, name: &str) -> Result<String, RealmError> {
    check_app(app)?;
    if name.chars().any(char::is_control) {
        return Err(RealmError::Control {
            what: "the name",
            name: name.to_string(),
        });
    }
    Ok(if app == DEFAULT_APP {
        name.to_string()
    } else {
        format!("{app}{SEPARATOR}{name}")
    })
}

/// Whether `app` can name a realm: not empty, no control characters.
pub fn check_app(app: &str) -> Result<(), RealmError> {
    if app.is_empty() {
        return Err(RealmError::EmptyApp);
    }
    if app.chars().any(char::is_control) {
        return Err(RealmError::Control {
            what: "the app name",
            name: app.to_string(),
        });
    }
    Ok(())
}

/// The app and the name inside it of a stored name.
pub fn split(stored: &str) -> (&str, &str) {
    stored
        .split_once(SEPARATOR)
        .unwrap_or((DEFAULT_APP, stored))
}

/// The name inside `app`'s realm of a stored name, or None when it belongs to another app.
pub fn local<'a>(app: &str, stored: &'a str) -> Option<&'a str> {
    let (owner, name) = split(stored);
    (owner == app).then_some(name)
}

/// A stored name as people read it: `shop/orders` for app shop's, `orders` for main's.
pub fn display(stored: &str) -> String {
    match split(stored) {
        (DEFAULT_APP, name) => name.to_string(),
        (app, name) => format!("{app}/{name}"),
    }
}

/// Keeps the entries of `app`'s realm (queue or series stats, say), renamed to their names
/// inside it.
pub fn keep_local<T>(app: &str, items: &mut Vec<T>, name: impl Fn(&mut T) -> &mut String) {
    items.retain_mut(|item| {
        let stored = name(item);
        match local(app, stored) {
            Some(inner) => {
                *stored = inner.to_string();
                true
            }
            None => false,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_app_keeps_its_names_and_others_are_apart() {
        assert_eq!(qualify(DEFAULT_APP, "orders").unwrap(), "orders");
        let shop = qualify("shop", "orders").unwrap();
        assert_ne!(shop, "orders");
        assert_eq!(split(&shop), ("shop", "orders"));
        assert_eq!(split("orders"), (DEFAULT_APP, "orders"));
        assert_eq!(local("shop", &shop), Some("orders"));
        assert_eq!(local(DEFAULT_APP, &shop), None);
        assert_eq!(local(DEFAULT_APP, "orders"), Some("orders"));
        assert_eq!(display(&shop), "shop/orders");
        assert_eq!(display("orders"), "orders");
        let mut names = vec![shop.clone(), "jobs".to_string()];
        keep_local("shop", &mut names, |n| n);
        assert_eq!(names, ["orders"]);
    }

    #[test]
    fn no_name_reaches_into_another_realm() {
        let sneaky = format!("shop{SEPARATOR}orders");
        assert!(matches!(
            qualify(DEFAULT_APP, &sneaky),
            Err(RealmError::Control { .. })
        ));
        assert!(qualify(&sneaky, "x").is_err());
        assert_eq!(qualify("", "x"), Err(RealmError::EmptyApp));
    }
}
