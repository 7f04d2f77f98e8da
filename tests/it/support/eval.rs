//! Evaluating through the protocol as a client does: stream the output, then the result.

use push_protocol::{Client, EvalResult, Op, Reply, Stream};

/// Evaluates `code` on `client` (in `session`); returns stdout, stderr and the result.
pub async fn eval_streams(
    client: &Client,
    session: Option<u64>,
    code: &str,
) -> (String, String, EvalResult) {
    let mut replies = client
        .call_stream(Op::Eval {
            session,
            code: code.into(),
            module: None,
        })
        .await
        .expect("send eval");
    let (mut out, mut err) = (String::new(), String::new());
    while let Some(reply) = replies.recv().await {
        match reply.expect("eval reply") {
            Reply::Output {
                stream: Stream::Stdout,
                text,
            } => out.push_str(&text),
            Reply::Output {
                stream: Stream::Stderr,
                text,
            } => err.push_str(&text),
            Reply::Evaluated(r) => return (out, err, *r),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no result for {code:?}");
}

/// Code that counts forever, publishing its count as `builtins.<marker>` so another session
/// can tell it is running (see [`wait_spinning`]).
pub fn spin_code(marker: &str) -> String {
    format!("import builtins\nn = 0\nwhile True:\n    n += 1\n    builtins.{marker} = n")
}

/// Waits (at most 20 s) until the loop of [`spin_code`] with `marker` has counted, by
/// evaluating in a fresh namespace on the same node: the state an interrupt test needs,
/// instead of a sleep that hopes the loop started.
pub async fn wait_spinning(client: &Client, marker: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let probe = format!("getattr(__import__('builtins'), {marker:?}, 0) > 0");
    loop {
        let (_, _, r) = eval_streams(client, None, &probe).await;
        if r.value.as_deref() == Some("True") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loop {marker} did not start within 20 s: {r:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
