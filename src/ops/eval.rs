//! Evaluations on this node's Python (`push eval`, the REPL, the editors): evals with their
//! output streamed back, evals on every member, sessions, completion, inspection, interrupts.

use std::time::{Duration, Instant};

use push_protocol::{ErrorBody, ErrorCode, Op, Outcome, Reply, Stream};
use tokio::sync::mpsc;

use super::fanout::fan_out;
use crate::node::Node;
use crate::workers::WorkerError;

/// Most bytes one `Output` frame carries; smaller prints are merged up to this.
const OUTPUT_CHUNK: usize = 64 << 10;
/// How long `EvalAll` waits for each node.
const EVAL_ALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime failure as the client sees it.
pub fn runtime_error(e: WorkerError) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("python runtime: {e}"))
}

/// Runs an evaluation on this node, streaming its output, and returns its result.
pub async fn eval(
    node: &Node,
    session: Option<u64>,
    code: String,
    module: Option<String>,
    progress: &mpsc::Sender<Reply>,
) -> Outcome {
    let started = Instant::now();
    let (mut output, mut done) = node.workers.eval(session, code, module, node.id);
    let result = loop {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Some(chunk) => send_output(chunk, &mut output, progress).await,
                None => break (&mut done).await,
            },
            result = &mut done => break result,
        }
    };
    while let Ok(chunk) = output.try_recv() {
        send_output(chunk, &mut output, progress).await;
    }
    let failed = !matches!(&result, Ok(Ok(r)) if r.error.is_none());
    crate::metrics::metrics().eval(started.elapsed(), failed);
    match result {
        Ok(Ok(r)) => Ok(Reply::Evaluated(Box::new(r))),
        Ok(Err(e)) => Err(runtime_error(e)),
        Err(_) => Err(ErrorBody::new(
            ErrorCode::Internal,
            "the evaluation thread stopped without an answer",
        )),
    }
}

/// Sends `first` and whatever more of the same stream is already waiting, up to
/// [`OUTPUT_CHUNK`] bytes, as one `Output` frame.
async fn send_output(
    first: (Stream, String),
    output: &mut mpsc::UnboundedReceiver<(Stream, String)>,
    progress: &mpsc::Sender<Reply>,
) {
    let (stream, mut text) = first;
    while text.len() < OUTPUT_CHUNK {
        match output.try_recv() {
            Ok((s, more)) if s == stream => text.push_str(&more),
            Ok(other) => {
                let _ = progress
                    .send(Reply::Output {
                        stream,
                        text: std::mem::take(&mut text),
                    })
                    .await;
                let (s, t) = other;
                let _ = progress.send(Reply::Output { stream: s, text: t }).await;
                return;
            }
            Err(_) => break,
        }
    }
    let _ = progress.send(Reply::Output { stream, text }).await;
}

/// Evaluates `code` on every member, each in a throwaway namespace.
pub async fn eval_all(node: &Node, code: String) -> Outcome {
    let targets: Vec<u64> = node.members().iter().map(|m| m.id).collect();
    let op = Op::Eval {
        session: None,
        code: code.clone(),
        module: None,
    };
    let (sink, _) = mpsc::channel(1);
    let results = fan_out(node, &targets, op, EVAL_ALL_TIMEOUT, || {
        eval(node, None, code, None, &sink)
    })
    .await;
    Ok(Reply::EvaluatedAll(
        results
            .into_iter()
            .map(|(id, outcome)| {
                let result = match outcome {
                    Ok(Reply::Evaluated(r)) => Ok(*r),
                    Ok(other) => Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!("unexpected reply {other:?}"),
                    )),
                    Err(e) => Err(e),
                };
                (id, result)
            })
            .collect(),
    ))
}

/// Sessions and the editor's questions, answered by this node's Python.
pub async fn session(node: &Node, op: &Op) -> Outcome {
    let rt = &node.workers;
    match op {
        Op::SessionOpen => rt
            .open_session()
            .await
            .map(|id| Reply::Session { id })
            .map_err(runtime_error),
        Op::SessionOpenOn { worker, pool } => rt
            .open_session_on(*worker, pool.as_deref())
            .await
            .map(|id| Reply::Session { id })
            .map_err(|e| match e {
                WorkerError::NoSuchWorker(..) | WorkerError::NoSuchPool(..) => {
                    ErrorBody::new(ErrorCode::Invalid, e.to_string())
                }
                e => runtime_error(e),
            }),
        Op::SessionClose { session } => rt
            .close_session(*session)
            .await
            .map(|existed| Reply::Closed { existed })
            .map_err(runtime_error),
        Op::IsComplete { code } => rt
            .is_complete(code.clone())
            .await
            .map(|complete| Reply::IsComplete { complete })
            .map_err(runtime_error),
        Op::Complete {
            session,
            code,
            cursor,
            module,
        } => rt
            .complete(*session, code.clone(), *cursor, module.clone())
            .await
            .map(|(start, items)| Reply::Completions { start, items })
            .map_err(runtime_error),
        Op::Inspect { session, expr } => match rt.inspect(*session, expr.clone()).await {
            Ok(i) => Ok(Reply::Inspected(Box::new(i))),
            Err(e) => Err(ErrorBody::new(
                ErrorCode::Invalid,
                format!("cannot inspect {expr:?}: {e}"),
            )),
        },
        Op::Interrupt { session } => rt
            .interrupt(*session)
            .await
            .map(|running| Reply::Interrupted { running })
            .map_err(runtime_error),
        other => Err(ErrorBody::new(
            ErrorCode::Internal,
            format!("not a session request: {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut mpsc::Receiver<Reply>) -> Vec<(Stream, String)> {
        let mut out = Vec::new();
        while let Ok(Reply::Output { stream, text }) = rx.try_recv() {
            out.push((stream, text));
        }
        out
    }

    #[tokio::test]
    async fn prints_of_one_stream_merge_and_a_switch_splits() {
        let (tx, mut output) = mpsc::unbounded_channel();
        let (progress, mut rx) = mpsc::channel(8);
        tx.send((Stream::Stdout, "b".to_string())).expect("open");
        tx.send((Stream::Stderr, "c".to_string())).expect("open");
        send_output((Stream::Stdout, "a".into()), &mut output, &progress).await;
        assert_eq!(
            drain(&mut rx),
            vec![
                (Stream::Stdout, "ab".to_string()),
                (Stream::Stderr, "c".to_string())
            ]
        );
    }
}
