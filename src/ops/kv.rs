//! Replicated dicts (`push.kv`, `push kv`): reads at the client's chosen consistency, writes
//! proposed on the leader.

use push_protocol::{Outcome, ReadMode, Reply};

use super::leader::{self, Req};

/// `KvGet`: one value, or None.
pub async fn get(req: &Req<'_>, map: &str, key: &str, mode: ReadMode) -> Outcome {
    leader::read(req, mode, |s| Ok(Reply::Value(s.kv.get(map, key).cloned()))).await
}

/// `KvList`: the keys of `map` under `prefix`.
pub async fn list(req: &Req<'_>, map: &str, prefix: &str, mode: ReadMode) -> Outcome {
    leader::read(req, mode, |s| Ok(Reply::Keys(s.kv.keys(map, prefix)))).await
}

/// `KvSet`, `KvDelete`, `KvCas`: proposed as they are.
pub async fn write(req: &Req<'_>) -> Outcome {
    leader::write(req).await
}
