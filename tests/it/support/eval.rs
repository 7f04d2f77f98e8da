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
