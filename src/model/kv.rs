//! Replicated key-value maps: named maps of string keys to [`Value`]s.

use std::collections::BTreeMap;

use push_protocol::Value;
use serde::{Deserialize, Serialize};

/// All named maps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Kv {
    maps: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Kv {
    pub fn get(&self, map: &str, key: &str) -> Option<&Value> {
        self.maps.get(map)?.get(key)
    }

    pub fn set(&mut self, map: &str, key: &str, value: Value) {
        self.maps
            .entry(map.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }

    /// Removes `key`; says whether it existed. An emptied map disappears.
    pub fn delete(&mut self, map: &str, key: &str) -> bool {
        let Some(m) = self.maps.get_mut(map) else {
            return false;
        };
        let existed = m.remove(key).is_some();
        if m.is_empty() {
            self.maps.remove(map);
        }
        existed
    }

    /// Sets (or deletes, when `new` is None) only if the current value equals `expected`.
    /// Returns whether it did and the value now current.
    pub fn compare_and_set(
        &mut self,
        map: &str,
        key: &str,
        expected: Option<&Value>,
        new: &Option<Value>,
    ) -> (bool, Option<Value>) {
        let current = self.get(map, key);
        if current != expected {
            return (false, current.cloned());
        }
        match new {
            Some(value) => self.set(map, key, value.clone()),
            None => {
                self.delete(map, key);
            }
        }
        (true, new.clone())
    }

    /// Keys of `map` starting with `prefix`, in order.
    pub fn keys(&self, map: &str, prefix: &str) -> Vec<String> {
        self.maps
            .get(map)
            .map(|m| {
                m.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names of all maps.
    pub fn maps(&self) -> impl Iterator<Item = &String> {
        self.maps.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_semantics() {
        let mut kv = Kv::default();
        let one = Value::Int(1);
        assert_eq!(
            kv.compare_and_set("m", "k", Some(&one), &Some(Value::Int(2))),
            (false, None)
        );
        assert_eq!(
            kv.compare_and_set("m", "k", None, &Some(one.clone())),
            (true, Some(one.clone()))
        );
        assert_eq!(
            kv.compare_and_set("m", "k", None, &Some(Value::Int(5))),
            (false, Some(one.clone()))
        );
        assert_eq!(
            kv.compare_and_set("m", "k", Some(&one), &None),
            (true, None)
        );
        assert_eq!(kv.get("m", "k"), None);
        assert_eq!(kv.maps().count(), 0);
    }

    #[test]
    fn keys_by_prefix() {
        let mut kv = Kv::default();
        for k in ["a1", "a2", "b1", "a3"] {
            kv.set("m", k, Value::None);
        }
        assert_eq!(kv.keys("m", "a"), vec!["a1", "a2", "a3"]);
        assert_eq!(kv.keys("m", ""), vec!["a1", "a2", "a3", "b1"]);
        assert!(kv.keys("nope", "").is_empty());
    }
}
