//! The node's side of post-mortem and call tracing: failures are kept on the worker where
//! they happened (`runtime/postmortem.py`); this file lists them across the pool's workers,
//! reaches the one a failure id names (refusing a worker that restarted since, whose
//! failures went with it), and runs a trace on every worker of the pool at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use push_protocol::{EvalResult, FailureRow, Stream};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{slot_label, Link, Pool, WorkerError};
use crate::runtime::wire::{Done, Job};

/// Why a post-mortem request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// No such failure, frame or worker: the text says which and what to do.
    #[error("{0}")]
    NotFound(String),
    /// The failure belongs to an app the requester may not see.
    #[error("{0}")]
    Forbidden(String),
    /// Bad input (an unknown target, a failure that cannot be replayed).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// A failure id: `NODE.WORKER.START.SEQ` for a worker of the node's main pool,
/// `NODE.POOL.WORKER.START.SEQ` for one of an app pool (an app with dependencies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureId {
    pub node: u64,
    /// The app pool (its id on that node); None: the main pool.
    pub pool: Option<u64>,
    /// 1-based, as `push status` numbers workers.
    pub worker: u32,
    /// Which start of that worker (a restarted worker's failures are gone).
    pub start: u64,
    pub seq: u64,
}

impl FailureId {
    /// Parses `NODE.WORKER.START.SEQ` or `NODE.POOL.WORKER.START.SEQ`, saying what an id
    /// looks like when it is not one.
    pub fn parse(text: &str) -> Result<FailureId, DebugError> {
        let parts: Vec<Option<u64>> = text.trim().split('.').map(|p| p.parse().ok()).collect();
        let (node, pool, rest) = match parts.as_slice() {
            [Some(node), rest @ ..] if rest.len() == 3 => (*node, None, rest),
            [Some(node), Some(pool), rest @ ..] if rest.len() == 3 => (*node, Some(*pool), rest),
            _ => (0, None, &[][..]),
        };
        match rest {
            [Some(worker), Some(start), Some(seq)] if *worker >= 1 => Ok(FailureId {
                node,
                pool,
                worker: u32::try_from(*worker).unwrap_or(u32::MAX),
                start: *start,
                seq: *seq,
            }),
            _ => Err(DebugError::Invalid(format!(
                "{text:?} is not a failure id; ids look like 2.1.1.7 (node.worker.start.number, or node.pool.worker.start.number in an app's own pool): `push errors` lists them"
            ))),
        }
    }
}

impl std::fmt::Display for FailureId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pool {
            Some(pool) => write!(
                f,
                "{}.{pool}.{}.{}.{}",
                self.node, self.worker, self.start, self.seq
            ),
            None => write!(
                f,
                "{}.{}.{}.{}",
                self.node, self.worker, self.start, self.seq
            ),
        }
    }
}

/// A row as `postmortem._row` gives it.
#[derive(Deserialize)]
struct RawRow {
    seq: u64,
    app: String,
    version: Option<u64>,
    origin: String,
    at_ms: u64,
    error: String,
    place: String,
}

/// `postmortem.request`'s answer.
#[derive(Deserialize)]
struct Answer {
    ok: Option<serde_json::Value>,
    error: Option<String>,
    kind: Option<String>,
}

/// A Python error's text without its leading "SomeError: ".
fn clean(text: &str) -> String {
    match text.split_once(": ") {
        Some((head, rest)) if head.ends_with("Error") && !head.contains(' ') => rest.to_string(),
        _ => text.to_string(),
    }
}

impl Pool {
    /// The kept failures of every live worker of this pool and of its app pools, newest
    /// first, of the apps in `scope` (every app when empty).
    pub async fn failures(&self, node: u64, scope: &[String]) -> Vec<FailureRow> {
        let pools = self.app_pools();
        let (mut rows, more) = tokio::join!(
            self.own_failures(node, None, scope),
            crate::join::concurrently(pools.iter().map(|(_, pool)| pool.own_failures(
                node,
                Some(pool.id),
                scope
            )),)
        );
        rows.extend(more.into_iter().flatten());
        rows.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
        rows
    }

    /// The kept failures of this pool's own workers (`pool`: the id their ids carry), in no
    /// particular order.
    async fn own_failures(
        &self,
        node: u64,
        pool: Option<u64>,
        scope: &[String],
    ) -> Vec<FailureRow> {
        let request = serde_json::json!({"do": "list", "scope": scope}).to_string();
        let live: Vec<(usize, u64, Arc<Link>)> = self
            .live()
            .into_iter()
            .map(|(i, l)| (i, self.slots[i].generation.load(Ordering::Relaxed), l))
            .collect();
        // Answers come in the order they finish: each carries its worker.
        let answers = crate::join::concurrently(live.iter().map(|(index, start, link)| {
            let request = request.clone();
            async move { (*index, *start, link.job(Job::Debug { request }).await) }
        }))
        .await;
        let mut rows = Vec::new();
        for (index, start, answer) in answers {
            let Ok(Done::Json(Some(json))) = answer else {
                continue;
            };
            let Ok(Answer { ok: Some(ok), .. }) = serde_json::from_str::<Answer>(&json) else {
                continue;
            };
            let raw: Vec<RawRow> = serde_json::from_value(ok).unwrap_or_default();
            let worker = index as u32 + 1;
            rows.extend(raw.into_iter().map(|r| {
                FailureRow {
                    id: FailureId {
                        node,
                        pool,
                        worker,
                        start,
                        seq: r.seq,
                    }
                    .to_string(),
                    node,
                    worker,
                    app: r.app,
                    version: r.version,
                    origin: r.origin,
                    at_ms: r.at_ms,
                    error: r.error,
                    place: r.place,
                }
            }));
        }
        rows
    }

    /// The live workers of this pool and of its app pools, each with its label in trace
    /// lines (`w1`, `APP/w1`).
    fn live_everywhere(&self) -> Vec<(String, Arc<Link>)> {
        let mut live: Vec<(String, Arc<Link>)> = self
            .live()
            .into_iter()
            .map(|(index, link)| (slot_label(index), link))
            .collect();
        for (app, pool) in self.app_pools() {
            live.extend(
                pool.live()
                    .into_iter()
                    .map(|(index, link)| (format!("{app}/{}", slot_label(index)), link)),
            );
        }
        live
    }

    /// The worker failure `id` was kept on, in this pool or the app pool it names, if it is
    /// still the same start of that worker.
    fn holder(&self, id: &FailureId) -> Result<Arc<Link>, DebugError> {
        match id.pool {
            Some(wanted) if wanted != self.id => {
                let Some((_, pool)) = self.app_pools().into_iter().find(|(_, p)| p.id == wanted)
                else {
                    return Err(DebugError::NotFound(format!(
                        "node {} has no app pool {wanted} now (a deploy with other dependencies replaced it), and the failures its workers kept went with it; `push errors` lists the kept ones",
                        id.node
                    )));
                };
                pool.own_holder(id)
            }
            _ => self.own_holder(id),
        }
    }

    /// The worker of this pool failure `id` was kept on ([`Pool::holder`]).
    fn own_holder(&self, id: &FailureId) -> Result<Arc<Link>, DebugError> {
        let index = id.worker as usize - 1;
        let Some(slot) = self.slots.get(index) else {
            return Err(DebugError::NotFound(format!(
                "node {} has no python worker w{} (it has w1 to w{}), so it holds no failure {id}",
                id.node,
                id.worker,
                self.slots.len()
            )));
        };
        let now = slot.generation.load(Ordering::Relaxed);
        match slot.link() {
            Some(link) if now == id.start => Ok(link),
            Some(_) => Err(DebugError::NotFound(format!(
                "python worker {} of node {} restarted since failure {id} (that was its start {}, this is start {now}): the failures it kept are gone; `push errors` lists the kept ones",
                slot_label(index), id.node, id.start
            ))),
            None => Err(DebugError::NotFound(format!(
                "python worker {} of node {} is down (restarting), and the failures it kept went with it",
                slot_label(index),
                id.node
            ))),
        }
    }

    /// Asks the worker holding failure `id` one post-mortem question (`what`: open, locals,
    /// source, replay) and returns its JSON answer.
    pub async fn failure_request(
        &self,
        id: &FailureId,
        what: &str,
        frame: Option<u32>,
        scope: &[String],
    ) -> Result<serde_json::Value, DebugError> {
        let link = self.holder(id)?;
        let request =
            serde_json::json!({"do": what, "seq": id.seq, "frame": frame, "scope": scope})
                .to_string();
        let json = match link.job(Job::Debug { request }).await? {
            Done::Json(Some(json)) => json,
            other => return Err(WorkerError::Unexpected(format!("{other:?}")).into()),
        };
        let answer: Answer = serde_json::from_str(&json)
            .map_err(|e| WorkerError::Unexpected(format!("post-mortem answer: {e}")))?;
        if let Some(error) = answer.error {
            let error = error.replace("{id}", &id.to_string());
            return Err(match answer.kind.as_deref() {
                Some("PermissionError") => DebugError::Forbidden(error),
                Some("ValueError") => DebugError::Invalid(error),
                _ => DebugError::NotFound(error),
            });
        }
        Ok(answer.ok.unwrap_or(serde_json::Value::Null))
    }

    /// Evaluates `code` in frame `frame` of failure `id`; its prints go to `out`.
    pub async fn eval_in_frame(
        &self,
        id: &FailureId,
        frame: u32,
        code: String,
        scope: Vec<String>,
        out: &mpsc::UnboundedSender<(Stream, String)>,
    ) -> Result<EvalResult, DebugError> {
        let link = self.holder(id)?;
        let job = Job::EvalInFrame {
            seq: id.seq,
            frame,
            code,
            scope,
            node: id.node,
        };
        let (mut output, done) = link.eval(job);
        while let Some(chunk) = output.recv().await {
            let _ = out.send(chunk);
        }
        match done.await {
            Ok(Ok(Done::Eval(result, _))) => Ok(result),
            Ok(Ok(Done::Failed(text))) => Err(DebugError::NotFound(
                clean(&text).replace("{id}", &id.to_string()),
            )),
            Ok(Ok(other)) => Err(WorkerError::Unexpected(format!("{other:?}")).into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(WorkerError::Lost("the worker's link closed".into()).into()),
        }
    }

    /// Traces calls of `target` on every live worker of this pool, each event a line to
    /// `out`, until `max` events in all, `secs` seconds, or an untrace. Returns the events
    /// printed and why it stopped.
    pub async fn trace(
        &self,
        node: u64,
        target: &str,
        max: u32,
        secs: u32,
        scope: &[String],
        out: &mpsc::UnboundedSender<(Stream, String)>,
    ) -> Result<(u64, String), DebugError> {
        // This pool's workers and those of the app pools: the target's module may be in
        // any of them.
        let live = self.live_everywhere();
        if live.is_empty() {
            return Err(WorkerError::NoWorker("none is up".into()).into());
        }
        let (merged, mut events) = mpsc::unbounded_channel();
        let mut ends = Vec::new();
        for (label, link) in &live {
            let job = Job::Trace {
                target: target.to_string(),
                max,
                secs,
                scope: scope.to_vec(),
                label: format!("node {node} {label}"),
            };
            let (mut output, done) = link.eval(job);
            let merged = merged.clone();
            tokio::spawn(async move {
                while let Some(chunk) = output.recv().await {
                    let _ = merged.send(chunk);
                }
            });
            ends.push(done);
        }
        drop(merged);
        let mut printed = 0u64;
        let mut untraced = false;
        while let Some(chunk) = events.recv().await {
            if printed < u64::from(max) {
                printed += 1;
                let _ = out.send(chunk);
            }
            if printed >= u64::from(max) && !untraced {
                untraced = true;
                self.untrace().await;
            }
        }
        let mut why = None;
        let mut failure = None;
        for end in ends {
            match end.await {
                Ok(Ok(Done::Json(Some(json)))) => {
                    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                    if why.is_none() {
                        why = v["why"].as_str().map(str::to_string);
                    }
                }
                Ok(Ok(Done::Failed(text))) => failure = Some(clean(&text)),
                Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {}
            }
        }
        if let (Some(text), None) = (&failure, &why) {
            return Err(if text.contains("not a module of your apps") {
                DebugError::Forbidden(text.clone())
            } else {
                DebugError::Invalid(text.clone())
            });
        }
        let why = if untraced && printed >= u64::from(max) {
            format!("{max} events printed")
        } else {
            why.unwrap_or_else(|| "the workers ended".into())
        };
        Ok((printed, why))
    }

    /// Stops every trace running on the workers of this pool and its app pools; returns how
    /// many stopped.
    pub async fn untrace(&self) -> u64 {
        let request = serde_json::json!({"do": "untrace"}).to_string();
        let links = self.live_everywhere();
        let answers = crate::join::concurrently(links.iter().map(|(_, link)| {
            link.job(Job::Debug {
                request: request.clone(),
            })
        }))
        .await;
        answers
            .into_iter()
            .filter_map(|a| match a {
                Ok(Done::Json(Some(json))) => serde_json::from_str::<Answer>(&json).ok(),
                _ => None,
            })
            .filter_map(|a| a.ok.and_then(|v| v.as_u64()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_ids_of_the_main_pool_and_of_app_pools_round_trip() {
        for text in ["2.1.1.7", "2.3.1.1.7"] {
            let id = FailureId::parse(text).unwrap();
            assert_eq!(id.to_string(), text);
        }
        assert_eq!(FailureId::parse("2.1.1.7").unwrap().pool, None);
        assert_eq!(FailureId::parse(" 2.3.1.1.7 ").unwrap().pool, Some(3));
        for bad in [
            "",
            "2.1.1",
            "2.0.1.7",
            "2.x.1.1",
            "1.2.3.4.5.6",
            "2.3.0.1.7",
        ] {
            let err = FailureId::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("is not a failure id") && err.contains("push errors"),
                "{bad}: {err}"
            );
        }
    }
}
